#!/usr/bin/env bash
# One device call for a kernel iteration: build (all cores), the GPU test suite, the benchmark,
# optionally the stand-alone forward harness timing key-block / switch variants (ABL=variants file)
# and an Nsight Compute summary of the d = 128 backward (NCU=1).
# Usage: [MODE=fwd|bwd|both] [ABL=csrc/sm90/test/ablation_tiles.txt] bash bench/device_iter.sh TAG
# (outputs under $OUT; BENCH_ARGS / PYTEST_ARGS / TEST_TIMEOUT pass through)
set -o pipefail
TAG=${1:-iter}
MODE=${MODE:-both}
export PYTHONUNBUFFERED=1 MAX_JOBS=$(nproc) FA4_CUDA_ARCHS=90a
[ -x /usr/bin/g++ ] && export CXX=/usr/bin/g++
OUT=${OUT:-/tmp/fa4_out}; mkdir -p "$OUT"
s=$(date +%s); make build > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build $(( $(date +%s) - s )) s"
if [ -n "${ABL:-}" ]; then
  s=$(date +%s)
  bash csrc/sm90/test/build.sh /tmp/test_fwd "$(nproc)" "$ABL" > "$OUT/abl_build.log" 2>&1 || { tail -40 "$OUT/abl_build.log"; exit 1; }
  echo "harness build $(( $(date +%s) - s )) s"
fi
timeout ${TEST_TIMEOUT:-240} python3 -m pytest -q -n 8 -p no:cacheprovider tests -m "not serial" ${PYTEST_ARGS:-} > "$OUT/test.log" 2>&1
echo "tests rc $?"; grep -E "passed|failed" "$OUT/test.log" | tail -1; grep -E "^(FAILED|ERROR)" "$OUT/test.log" | head -20
python3 -m flash_attn4.bench --out-dir "$OUT" --mode "$MODE" --tag "$TAG" ${BENCH_ARGS:-} > "$OUT/bench.log" 2>&1
echo "bench rc $?"
if [ -n "${ABL:-}" ]; then
  timeout 200 /tmp/test_fwd ablation > "$OUT/ablation.log" 2>&1
  echo "ablation rc $?"; grep -E "TFLOP|FAIL" "$OUT/ablation.log" | sed -E 's/ +max\|dO\|.*\) +/ /' | head -60
fi
if [ "${NCU:-0}" = 1 ]; then
  PYTHONPATH=. timeout 120 ncu --clock-control none --kernel-name regex:bwd_kernel --launch-skip 0 \
    --section SpeedOfLight --section WarpStateStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section SourceCounters --section SchedulerStats \
    python3 bench/profile_bwd.py 128 > "$OUT/ncu.log" 2>&1
  grep -E -A0 "Duration|Throughput|Issue Slots Busy|Warp Cycles Per Issued|Bank|Stall|stall" "$OUT/ncu.log" | head -60
fi
