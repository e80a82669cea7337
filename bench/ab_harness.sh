#!/usr/bin/env bash
# Same-machine A/B of the forward: builds the stand-alone harness (csrc/sm90/test) from each given
# tree (a directory holding a csrc/, e.g. a copy taken before a change; "." is this checkout), all
# in parallel, times each with `test_fwd ablation` over the variants file (each line also times
# the dispatched kernel of its head dim / mask as "api"), and prints the TFLOP/s side by side,
# one column per tree in the order given.
# Usage: bash bench/ab_harness.sh VARIANTS TREE [TREE ...]   (logs under $OUT)
set -o pipefail
VARIANTS=$(realpath "$1"); shift
OUT=${OUT:-/tmp/fa4_ab}; mkdir -p "$OUT"
export CUTLASS_INC=$(pwd)/third_party/cutlass/include
JOBS=$(( $(nproc) / $# )); [ "$JOBS" -ge 1 ] || JOBS=1
s=$(date +%s)
i=0
for tree in "$@"; do
  (cd "$tree" && bash csrc/sm90/test/build.sh /tmp/test_fwd_$i "$JOBS" "$VARIANTS") > "$OUT/build_$i.log" 2>&1 &
  i=$((i + 1))
done
wait
echo "harness builds $(( $(date +%s) - s )) s"
cols=()
for ((j = 0; j < i; j++)); do
  tail -n 1 "$OUT/build_$j.log"
  timeout 240 /tmp/test_fwd_$j ablation > "$OUT/ablation_$j.log" 2>&1
  echo "tree $j rc $?"
  if [ "$j" = 0 ]; then
    grep -E "TFLOP|FAIL" "$OUT/ablation_$j.log" | sed -E 's/ +PASS.* ([0-9.]+) TFLOP\/s.*/ \1/; s/ +FAIL.*/ FAIL/' > "$OUT/col_$j"
  else
    grep -E "TFLOP|FAIL" "$OUT/ablation_$j.log" | sed -E 's/.* ([0-9.]+) TFLOP\/s.*/\1/; s/.*FAIL.*/FAIL/' > "$OUT/col_$j"
  fi
  cols+=("$OUT/col_$j")
done
paste "${cols[@]}"
