#!/usr/bin/env bash
# Run HERE (the development machine, which reaches Debian's package servers), before a device call:
# downloads the .deb files of the C++ libraries qrt builds against into .gpu-deps/, because the GPU
# machine has the CUDA toolchain but no -dev packages and no network. scripts/gpu-check.sh unpacks
# them with `dpkg -x` into /tmp/qrt-deps there. Pass the folder with the device tool's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.gpu-deps
PKGS=(libgtest-dev libgmock-dev libbenchmark-dev libbenchmark1debian nlohmann-json3-dev libcli11-dev
      libfmt-dev libfmt9)
mkdir -p "$DEST"
have_all=1
for p in "${PKGS[@]}"; do ls "$DEST"/"${p}"_*.deb >/dev/null 2>&1 || have_all=0; done
if [ "$have_all" = 1 ]; then echo "gpu-deps: all ${#PKGS[@]} packages already in $DEST"; exit 0; fi
[ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null)" ] || apt-get update -qq
(cd "$DEST" && apt-get download "${PKGS[@]}")
ls -la "$DEST"
