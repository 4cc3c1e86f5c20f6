#!/usr/bin/env bash
# The main job: install what is missing, build, fetch the default model, and answer a prompt.
#   scripts/run.sh                      -> chat answer from SmolLM2-135M-Instruct on this machine
#   scripts/run.sh -p "Your prompt" -n 64   (any `qrt run` flags)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
scripts/build.sh
MODEL="$(scripts/fetch-model.sh)"
if [ $# -eq 0 ]; then
  set -- --chat -p "What is the capital of France? Answer in one sentence." -n 64
fi
exec build/qrt run -m "$MODEL" "$@"
