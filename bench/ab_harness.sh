#!/usr/bin/env bash
# Same-machine A/B of the forward: builds the stand-alone harness (csrc/sm90/test) from this tree
# and from BASE (a directory holding an older csrc/, e.g. a copy taken before a change), in
# parallel, then times both with `test_fwd ablation` over the variants file (each line also times
# the dispatched kernel of its head dim / mask as "api") and prints the timings side by side.
# Usage: bash bench/ab_harness.sh BASE [VARIANTS]   (outputs under $OUT)
set -o pipefail
BASE=$1
VARIANTS=${2:-csrc/sm90/test/ablation_variants.txt}
OUT=${OUT:-/tmp/fa4_ab}; mkdir -p "$OUT"
CUT=$(pwd)/third_party/cutlass/include
JOBS=$(( $(nproc) / 2 ))
s=$(date +%s)
bash csrc/sm90/test/build.sh /tmp/test_fwd_new "$JOBS" "$VARIANTS" > "$OUT/build_new.log" 2>&1 &
(cd "$BASE" && CUTLASS_INC=$CUT bash csrc/sm90/test/build.sh /tmp/test_fwd_base "$JOBS" "$(cd - >/dev/null; pwd)/$VARIANTS") > "$OUT/build_base.log" 2>&1 &
wait
echo "harness builds $(( $(date +%s) - s )) s"; tail -n 1 "$OUT/build_new.log" "$OUT/build_base.log"
for v in base new; do
  timeout 240 /tmp/test_fwd_$v ablation > "$OUT/ablation_$v.log" 2>&1
  echo "$v rc $?"
done
paste <(grep -E "TFLOP|FAIL" "$OUT/ablation_base.log" | sed -E 's/ +max\|dO\|.*\) +/ /') \
      <(grep -E "TFLOP|FAIL" "$OUT/ablation_new.log" | grep -oE "[0-9.]+ TFLOP/s[^|]*$|FAIL.*") | head -80
