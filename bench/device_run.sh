#!/usr/bin/env bash
# One call on the GPU machine: build with all cores, run the README's test command, then the
# benchmark; logs and results go to $OUT. Usage (from the repo root, CUTLASS carried in
# third_party/cutlass):  bash bench/device_run.sh [bench args...]
set -o pipefail
export PYTHONUNBUFFERED=1 MAX_JOBS=$(nproc) FA4_CUDA_ARCHS=${FA4_CUDA_ARCHS:-90a}
# The image's default CXX (/opt/gcc) links libstdc++ statically; setup.py refuses that build.
[ -x /usr/bin/g++ ] && export CXX=/usr/bin/g++
OUT=${OUT:-/tmp/fa4_out}
mkdir -p "$OUT/bench"
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv; python3 -c "import torch; print(torch.__version__, torch.version.cuda)"; date -u; } | tee "$OUT/gpu.txt"
start=$(date +%s)
make build > "$OUT/build.log" 2>&1; status=$?
echo "build: exit $status in $(( $(date +%s) - start )) s ($MAX_JOBS jobs)" | tee -a "$OUT/build.log"
[ $status -eq 0 ] || { tail -60 "$OUT/build.log"; exit 1; }
make test PYTEST_ARGS="${PYTEST_ARGS:-}" > "$OUT/test.log" 2>&1
echo "tests: exit $?"; grep -E "passed|failed|error" "$OUT/test.log" | tail -3
grep -E "^(FAILED|ERROR)" "$OUT/test.log" | head -30
[ "${SKIP_BENCH:-0}" = 1 ] || python3 -m flash_attn4.bench --out-dir "$OUT/bench" "$@" > "$OUT/bench.log" 2>&1
[ "${SKIP_BENCH:-0}" = 1 ] || tail -70 "$OUT/bench.log"
