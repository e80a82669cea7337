#!/usr/bin/env bash
# Same-machine A/B of the backward main kernel: builds bench_bwd (csrc/sm90/test/bench_bwd.cu,
# this checkout's harness) against each given source tree (a directory holding a csrc/; "." is
# this checkout), all in parallel, runs the binaries in turn twice (A B ... A B ...), and prints
# TFLOP/s side by side, one column per tree and round. BB_DIMS="128" restricts the head dims.
# An argument that is an executable file is taken as an already built bench_bwd (built here with
# build_bench_bwd.sh, so the device call only times it).
# Usage: bash bench/ab_bwd.sh TREE|BINARY [TREE|BINARY ...]   (logs under $OUT)
set -o pipefail
OUT=${OUT:-/tmp/fa4_ab_bwd}; mkdir -p "$OUT"
export CUTLASS_INC=$(pwd)/third_party/cutlass/include BB_SRC=$(pwd)/csrc/sm90/test
JOBS=$(( $(nproc) / $# )); [ "$JOBS" -ge 1 ] || JOBS=1; [ "$JOBS" -le 3 ] || JOBS=3
s=$(date +%s)
i=0
for tree in "$@"; do
  if [ -f "$tree" ] && [ -x "$tree" ]; then
    cp "$tree" /tmp/bench_bwd_$i && echo "built (prebuilt $tree)" > "$OUT/bwd_build_$i.log"
  else
    (cd "$tree" && bash "$BB_SRC/build_bench_bwd.sh" /tmp/bench_bwd_$i "$JOBS") > "$OUT/bwd_build_$i.log" 2>&1 &
  fi
  i=$((i + 1))
done
wait
echo "bench_bwd builds $(( $(date +%s) - s )) s"
cols=()
for round in 0 1; do
  for ((j = 0; j < i; j++)); do
    tail -n 1 "$OUT/bwd_build_$j.log" | grep -q built || { echo "tree $j build failed"; tail -20 "$OUT/bwd_build_$j.log"; continue; }
    timeout ${BB_TIMEOUT:-120} /tmp/bench_bwd_$j ${BB_REPS:-15} > "$OUT/bwd_run_${j}_$round.log" 2>&1
    echo "tree $j round $round rc $?"
    if [ ${#cols[@]} = 0 ]; then
      sed -E 's/ +[0-9.]+ us +([0-9.]+) TFLOP\/s/ \1/' "$OUT/bwd_run_${j}_$round.log" > "$OUT/bwd_col_${j}_$round"
    else
      sed -E 's/.* ([0-9.]+) TFLOP\/s/\1/' "$OUT/bwd_run_${j}_$round.log" > "$OUT/bwd_col_${j}_$round"
    fi
    cols+=("$OUT/bwd_col_${j}_$round")
  done
done
paste "${cols[@]}"
