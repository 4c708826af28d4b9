#!/usr/bin/env bash
# One install script for `make setup`, CI and the Dockerfile, so all three run the same steps.
#
#   scripts/install.sh [--dev] [--cpu-torch | --pypi-torch]
#     --dev         also test tools (pytest, Playwright, ruff, hadolint) and Debian's chromium for browser tests
#     --cpu-torch   (default) torch/torchvision CPU builds from the PyTorch CPU wheel index: no CUDA libraries, which
#                   a CPU app never loads; where that index cannot be reached, PyPI's build, with a line saying so
#     --pypi-torch  torch from PyPI (several GB of CUDA libraries)
#   VENV=path      where the virtual environment lives (default .venv next to this repo)
#   PYTHON=python3.11  the interpreter to create it with
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0 cpu_torch=1
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    --cpu-torch) cpu_torch=1 ;;
    --pypi-torch) cpu_torch=0 ;;
    *) echo "install.sh: unknown option $arg (use --dev, --cpu-torch, --pypi-torch)" >&2; exit 2 ;;
  esac
done
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
CPU_INDEX=https://download.pytorch.org/whl/cpu

# The pinned set is Python 3.11's (torch 2.8 + IPEX 2.8 wheels): say so before pip fails on something else.
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  found=$("$PYTHON" --version 2>&1 || echo "no $PYTHON")
  echo "install.sh: needs Python 3.11 (the pinned requirements are built for it); $PYTHON is: $found." >&2
  echo "install.sh: install python3.11 and run again with PYTHON=python3.11" >&2
  exit 1
fi
if [ "$cpu_torch" = 1 ] && ! "$PYTHON" -c "import urllib.request; urllib.request.urlopen('$CPU_INDEX/', timeout=10)" \
    2>/dev/null; then
  echo "install.sh: the PyTorch CPU wheel index ($CPU_INDEX) is out of reach: installing PyPI's torch instead"
  cpu_torch=0
fi

# Debian packages: jemalloc for the allocator variant, a C++ compiler for torch.compile's inductor (the pytorch-bf16
# row compiles its kernels at load: without one it fails with InvalidCxxCompiler), chromium for the browser test.
apt_packages=(libjemalloc2 g++)
# inductor's kernels include Python.h: Debian's python3-dev where the interpreter came without its headers (a
# Debian python3.11; python.org's and the official Docker images ship them).
"$PYTHON" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
  || apt_packages+=(python3-dev)
[ "$dev" = 1 ] && apt_packages+=(chromium)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "install.sh: apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "install.sh: please install the Debian packages: ${missing[*]} (needs root)" >&2
    [ "$dev" = 1 ] && exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
stamp="$VENV/.installed-$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)-$dev-$cpu_torch"
if [ -f "$stamp" ]; then
  echo "install.sh: $VENV is up to date"
  exit 0
fi
if [ "$cpu_torch" = 1 ]; then
  "${pip[@]}" --index-url https://download.pytorch.org/whl/cpu torch==2.8.0+cpu torchvision==0.23.0+cpu
  grep -vE '^(torch|torchvision|triton|nvidia-)' requirements.txt > "$VENV/requirements-cpu.txt"
  "${pip[@]}" -r "$VENV/requirements-cpu.txt"
else
  "${pip[@]}" -r requirements.txt
fi
[ "$dev" = 1 ] && "${pip[@]}" -r requirements-dev.txt
"$VENV/bin/python" -m pip check
rm -f "$VENV"/.installed-*
touch "$stamp"
echo "install.sh: done ($VENV)"
