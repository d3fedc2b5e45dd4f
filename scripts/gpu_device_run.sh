#!/usr/bin/env bash
# The one prepared run for a lent GPU machine (device time is scarce: build, check, measure, in
# one call). Writes everything under $OUT (default ./gpu_out):
#   install.log / build.log   installing the prebuilt wheel, or building on the device
#   gpu.json, gpu.log   self-play differential on every board/players/policy + throughput sweep
#   env.json, env.log   batch-environment differential + env steps/s
#   ptxas.log           registers / stack / spills of every kernel for the GPU's architecture
#   search.log          the search kernel against its host twin (tests/test_search.py, GPU tests)
# The device image has cupy, pytest, pybind11 and scikit-build-core but no network, so the
# install takes no dependencies (--no-deps; the GPU path needs none it lacks).
# Each stage is bounded so a slow stage cannot eat the others' time (about 9 minutes in all, under
# the 10-minute command limit); the exit status is the first failing stage's. Both benches start
# with their differential check (GPU == CPU, exit 1 otherwise), so the pytest GPU tests, which
# check the same things, are not repeated here.
# Usage: here `bash scripts/build_device_wheel.sh`, then (device tool, carry [".whl"])
#   bash scripts/gpu_device_run.sh   (with OUT=$OUT set by the tool)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-gpu_out}"
mkdir -p "$OUT"
status=0
stage() {  # stage NAME SECONDS CMD...
  local name=$1 secs=$2
  shift 2
  echo "== $name (limit ${secs}s)" | tee -a "$OUT/summary.txt"
  local t0=$SECONDS
  timeout "$secs" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "   rc=$rc in $((SECONDS - t0))s" | tee -a "$OUT/summary.txt"
  tail -n 5 "$OUT/$name.log" | sed 's/^/   /' | tee -a "$OUT/summary.txt"
  if [[ $rc -ne 0 && $status -eq 0 ]]; then status=$rc; fi
}

nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv >"$OUT/gpu_info.txt" 2>&1 || true
# The wheel built here beforehand (scripts/build_device_wheel.sh, carried in .whl/) when it was
# built from exactly these sources; else, or if it does not install, build on the device.
wheel=$(ls .whl/ringrift-*-cp312-*.whl 2>/dev/null | head -n1 || true)
if [[ -n "$wheel" && -f .whl/SOURCES.sha256 && "$(bash scripts/source_digest.sh)" == "$(cat .whl/SOURCES.sha256)" ]] &&
   timeout 60 python3 -m pip install --no-deps --no-index --force-reinstall -q "$wheel" >"$OUT/install.log" 2>&1; then
  echo "== install: prebuilt $wheel" | tee -a "$OUT/summary.txt"
else
  echo "== install: no prebuilt wheel for these sources (${wheel:-none}); building" | tee -a "$OUT/summary.txt"
  stage build 150 python3 -m pip install --no-build-isolation --no-deps -q .
fi
arch="sm_$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d '.')"
[[ "$arch" == "sm_" ]] && arch=sm_90
stage ptxas 60 bash -c "for k in selfplay/selfplay_kernel selfplay/env_kernel search/search_kernel; do nvcc -std=c++17 -I csrc -arch=$arch -Xptxas -v -c csrc/\$k.cu -o /tmp/\$(basename \$k).o; done"
stage search 60 python3 -m pytest -q -x -rs -p no:cacheprovider tests/test_search.py -k cuda_search_kernel
stage gpu 190 python3 bench/gpu_bench.py --json "$OUT/gpu.json" --budget-s 110
stage env 120 python3 bench/env_bench.py --device cuda --json "$OUT/env.json" --steps 20
exit $status
