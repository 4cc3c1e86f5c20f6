#!/usr/bin/env bash
# Installs what qrt needs to build and test, only what is missing (fast when all is present).
# Debian packages with apt-get; Python packages with pip. Sourced by run.sh, test.sh, gpu-check.sh.
set -euo pipefail

QRT_APT_PACKAGES=(cmake g++ clang make pkg-config libxml2-utils libgtest-dev libgmock-dev libbenchmark-dev
                  nlohmann-json3-dev libcli11-dev libfmt-dev libcpp-httplib-dev libssl-dev curl python3 python3-pip
                  python3-venv python3-dev)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${QRT_APT_PACKAGES[@]}"; do
    [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == *"install ok installed"* ]] || missing+=("$p")
  done
fi
if ((${#missing[@]})); then
  # python3/pip may come from pyenv rather than Debian: skip them when already on PATH.
  filtered=()
  for p in "${missing[@]}"; do
    case "$p" in
      python3) command -v python3 >/dev/null || filtered+=("$p") ;;
      python3-pip) python3 -m pip --version >/dev/null 2>&1 || filtered+=("$p") ;;
      # The Python package's tests make a virtual environment and compile against Python.h.
      python3-venv) python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || filtered+=("$p") ;;
      python3-dev) python3 -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' >/dev/null 2>&1 ||
                     filtered+=("$p") ;;
      *) filtered+=("$p") ;;
    esac
  done
  if ((${#filtered[@]})); then
    echo "qrt: installing ${filtered[*]}" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${filtered[@]}" >/dev/null
  fi
fi
