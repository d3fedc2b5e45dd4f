#!/usr/bin/env bash
# Prints one digest of every source file a ringrift wheel is built from (csrc/, python/ and the
# build files; caches and build outputs left out). build_device_wheel.sh records it beside the
# wheel, and gpu_device_run.sh installs that wheel only on a tree with the same digest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
find csrc python CMakeLists.txt pyproject.toml -type f -not -path '*/__pycache__/*' -not -name '*.py[cod]' \
  -not -name '*.so' -not -name '*.o' -print0 |
  LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
