#!/usr/bin/env bash
# One device call for a forward change's correctness: build (all cores), the listed GPU tests
# (default: the forward test file), then compute-sanitizer memcheck and racecheck over
# bench/sanitize_fwd.py. Logs under $OUT. Usage: bash bench/device_check.sh [pytest targets...]
set -o pipefail
export PYTHONUNBUFFERED=1 MAX_JOBS=$(nproc) FA4_CUDA_ARCHS=${FA4_CUDA_ARCHS:-90a}
[ -x /usr/bin/g++ ] && export CXX=/usr/bin/g++
OUT=${OUT:-/tmp/fa4_out}; mkdir -p "$OUT"
s=$(date +%s); make build > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build $(( $(date +%s) - s )) s"
s=$(date +%s)
timeout ${TEST_TIMEOUT:-300} python3 -m pytest -q -n 8 -p no:cacheprovider -m "not serial" \
  ${@:-tests/test_cuda_fwd.py} > "$OUT/test.log" 2>&1
echo "tests rc $? in $(( $(date +%s) - s )) s"; grep -E "passed|failed" "$OUT/test.log" | tail -1
grep -E "^(FAILED|ERROR)" "$OUT/test.log" | head -20
for tool in memcheck racecheck; do
  PYTHONPATH=. timeout 240 compute-sanitizer --tool $tool python3 bench/sanitize_fwd.py > "$OUT/sanitize_$tool.log" 2>&1
  echo "$tool rc $?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitize_$tool.log" | tail -1)"
done
