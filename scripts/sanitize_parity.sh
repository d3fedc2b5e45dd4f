#!/usr/bin/env bash
# Build ringrift._core with AddressSanitizer + UBSan in its own venv and build
# dir, replay the recorded reference games through it, then run a short fuzz
# pass of the engine API (tests/test_fuzz.py and tests/test_api_hardening.py) and the search tests.
# Fails on a parity failure, a fuzz failure and on any sanitizer report.
#
# Usage: bash scripts/sanitize_parity.sh [REPLAY_DIR] [extra ringrift-parity args...]
#   REPLAY_DIR defaults to ../shared/parity/ts-replays (relative to the repo root).
#   PYTHON=...  base interpreter for the venv (default: python3)
#   RINGRIFT_SANITIZE_FUZZ=0  skips the fuzz pass; RINGRIFT_FUZZ_EXAMPLES scales it (default 0.5)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

replays="${1:-../shared/parity/ts-replays}"
shift || true

base_python="${PYTHON:-python3}"
venv="$repo_root/build/asan-venv"
build_dir="build/asan"
log_dir="build/asan-logs"
mkdir -p "$log_dir"
log="$log_dir/parity.log"

say() { echo "sanitize_parity: $*" >&2; }

if [[ ! -e "$replays" ]]; then
  say "ERROR: replay path $replays does not exist"
  exit 1
fi

# --- runtime libraries -------------------------------------------------------
libasan="$(gcc -print-file-name=libasan.so)"
libubsan="$(gcc -print-file-name=libubsan.so)"
for lib in "$libasan" "$libubsan"; do
  if [[ "$lib" != /* || ! -e "$lib" ]]; then
    say "ERROR: gcc does not provide $(basename "$lib") (install libasan/libubsan for this gcc)"
    exit 1
  fi
done

# --- venv: sees the base environment's packages (numpy, pyyaml) but gets its
# own, sanitized, ringrift installed on top of them --------------------------
if ! "$venv/bin/python" -c "import sys" >/dev/null 2>&1; then
  say "creating $venv"
  rm -rf "$venv"
  "$base_python" -m venv --system-site-packages "$venv"
fi
vpy="$venv/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
"$vpy" -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.12" numpy pyyaml pytest hypothesis

say "building the sanitized extension in $build_dir"
"$vpy" -m pip install -q --no-build-isolation --no-deps --ignore-installed \
  -C cmake.define.RINGRIFT_SANITIZE=ON \
  -C cmake.build-type=Debug \
  -C install.strip=false \
  -C build-dir="$build_dir" \
  .

# Make sure the venv really imports the instrumented module, not the base one.
# (Locate it without importing: the package imports _core, which would abort
# here because libasan is not preloaded yet.)
core_so="$(cd /tmp && "$vpy" -c '
import glob, importlib.util, os
spec = importlib.util.find_spec("ringrift")
hits = [h for d in spec.submodule_search_locations for h in glob.glob(os.path.join(d, "_core*.so"))]
print(hits[0] if hits else "")
')"
case "$core_so" in
  "$venv"/*) ;;
  *) say "ERROR: ringrift._core resolves to $core_so, not inside $venv"; exit 1 ;;
esac
if ! ldd "$core_so" | grep -q libasan; then
  say "ERROR: $core_so is not linked against libasan (was RINGRIFT_SANITIZE honoured?)"
  exit 1
fi

# --- run ---------------------------------------------------------------------
sanitized() {
  LD_PRELOAD="$libasan:$libubsan" \
  ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
  UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}" \
    "$@"
}
say "running ringrift-parity --replays $replays $* under ASan+UBSan (log: $log)"
set +e
sanitized "$venv/bin/ringrift-parity" --replays "$replays" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
fuzz_rc=0
if [[ "${RINGRIFT_SANITIZE_FUZZ:-1}" != 0 ]]; then
  # The fuzz pass feeds mutated states, moves, raw records and out-of-range indices to every
  # loader and index-taking function of the instrumented build (a minute or two at -O1); the
  # search tests (about 10 s) walk its trees and node pools on every board, small pools included;
  # the game-writer tests run the native threads that play and commit into SQLite (a few seconds).
  say "running the engine API fuzz pass under ASan+UBSan (log: $log)"
  RINGRIFT_FUZZ_EXAMPLES="${RINGRIFT_FUZZ_EXAMPLES:-0.5}" \
    sanitized "$vpy" -m pytest -q -p no:cacheprovider tests/test_fuzz.py tests/test_api_hardening.py \
      tests/test_search.py tests/test_search_selfplay.py tests/test_db_writer.py tests/test_selfplay_into_db.py \
      -k "not nvrtc" 2>&1 \
    | tee -a "$log"
  fuzz_rc=${PIPESTATUS[0]}
fi
set -e

report_re='ASan runtime does not come first|ERROR: AddressSanitizer|ERROR: LeakSanitizer|SUMMARY: (Address|UndefinedBehavior)Sanitizer|runtime error: '
if grep -Eq "$report_re" "$log"; then
  say "FAIL: sanitizer report(s) found:"
  grep -E "$report_re" "$log" | head -n 20 >&2
  exit 1
fi
if [[ $rc -ne 0 ]]; then
  say "FAIL: ringrift-parity exited with status $rc"
  exit "$rc"
fi
if [[ $fuzz_rc -ne 0 ]]; then
  say "FAIL: the fuzz pass exited with status $fuzz_rc"
  exit "$fuzz_rc"
fi
say "OK: parity and the fuzz pass passed with no sanitizer reports"
