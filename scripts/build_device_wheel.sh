#!/usr/bin/env bash
# Builds, on this machine, the wheel that scripts/gpu_device_run.sh installs on a lent GPU
# machine, so the device's scarce minutes go to the GPU rather than to compiling the binding
# (and the run does not depend on that image having Python's headers). The device's Python is
# 3.12 (/work/.library/device/KINDS.md); the wheel must match it.
# Usage: bash scripts/build_device_wheel.sh [PYTHON]     (default: a python3.12 on PATH or pyenv's)
# Writes .whl/ringrift-*-cp312-*.whl and .whl/SOURCES.sha256 (scripts/source_digest.sh of the tree
# it was built from); .whl/ is git-ignored and travels with `carry: [".whl"]`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
is_312() { [[ -n "$1" && -x "$1" ]] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; }
py="${1:-}"
if [[ -z "$py" ]]; then
  for cand in "$(command -v python3.12 2>/dev/null || true)" "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do
    if is_312 "$cand"; then py="$cand"; break; fi
  done
fi
if ! is_312 "$py"; then
  echo "build_device_wheel: ERROR: need Python 3.12 (the GPU machine's); pass its path as the argument" >&2
  exit 1
fi
mkdir -p .whl
rm -f .whl/ringrift-*.whl .whl/SOURCES.sha256
digest="$(bash scripts/source_digest.sh)"
"$py" -m pip wheel --no-deps -q -w .whl .
if [[ "$(bash scripts/source_digest.sh)" != "$digest" ]]; then
  echo "build_device_wheel: ERROR: the sources changed during the build; run it again" >&2
  exit 1
fi
echo "$digest" >.whl/SOURCES.sha256
ls -l .whl/ringrift-*.whl
echo "build_device_wheel: OK (sources $digest)"
