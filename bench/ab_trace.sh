#!/usr/bin/env bash
# Same-machine A/B of one forward kernel configuration through the stand-alone timing harness
# (csrc/sm90/test/trace_fwd.cu, built without the trace marks). Two steps:
#   bash bench/ab_trace.sh build BASE_TREE VARIANT_TREE BIN_DIR NAME:"FLAGS" [NAME:"FLAGS" ...]
#       on the CPU machine (no GPU needed): BIN_DIR/b<NAME> from BASE_TREE, BIN_DIR/s<NAME> from
#       VARIANT_TREE (trees: directories holding a csrc/, "." = this checkout), FLAGS e.g.
#       "-DTR_D=64 -DTR_CAUSAL=1 -DTR_WG=3"; BIN_DIR inside the checkout (untracked) travels to
#       the device.
#   bash bench/ab_trace.sh run BIN_DIR ROUNDS NAME:SEQ[,SEQ...] [...]
#       on the GPU: each process times 50 launches; base and variant alternate, and the order
#       flips every round (one process reads up to ±2 % off another of the same binary, bimodally:
#       PERF_NOTES, twenty-second session). Prints one line per process, then the mean ratio.
set -eo pipefail
cmd=$1; shift
if [ "$cmd" = build ]; then
  base=$(realpath "$1"); variant=$(realpath "$2"); bin=$(realpath -m "$3"); shift 3
  mkdir -p "$bin"
  tmp=$(mktemp -d)
  for side in b s; do
    tree=$base; [ $side = s ] && tree=$variant
    python3 bench/trace_fwd.py "$tree" "$tmp/$side" > /dev/null
    # untraced: the marks compile to nothing
    sed -i -E 's/^#define (P?TR)\(k\) .*/#define \1(k)/' "$tmp/$side/csrc/sm90/fwd_kernel.h"
  done
  for spec in "$@"; do
    name=${spec%%:*}; flags=${spec#*:}
    for side in b s; do
      # shellcheck disable=SC2086
      nvcc -std=c++17 -O3 -DNDEBUG -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr \
        --expt-extended-lambda --use_fast_math -Xptxas -v -I"$tmp/$side/csrc" \
        -Ithird_party/cutlass/include $flags csrc/sm90/test/trace_fwd.cu -o "$bin/$side$name" \
        > "$bin/$side$name.log" 2>&1 &
    done
    wait
    for side in b s; do
      grep -q "C751[2-8]" "$bin/$side$name.log" && echo "$side$name: ptxas serialised wgmma (C751x)"
      echo "$side$name: $(grep -m1 -A2 'Function properties for .*fwd_kernel' "$bin/$side$name.log" | grep -o '[0-9]* bytes spill stores, [0-9]* bytes spill loads')"
    done
  done
  rm -rf "$tmp"
elif [ "$cmd" = run ]; then
  bin=$1; rounds=$2; shift 2
  for r in $(seq "$rounds"); do
    order="b s"; [ $((r % 2)) = 0 ] && order="s b"
    for spec in "$@"; do
      name=${spec%%:*}
      for seq in $(echo "${spec#*:}" | tr , ' '); do
        for side in $order; do
          echo "$r $side$name $seq $(timeout 60 "$bin/$side$name" "$seq" | grep -m1 TFLOP | grep -o '[0-9.]* TFLOP' | cut -d' ' -f1)"
        done
      done
    done
  done | tee /dev/stderr | awk '{k = substr($2, 2) " " $3; v[k, substr($2, 1, 1)] += $4; n[k, substr($2, 1, 1)]++; keys[k] = 1}
    END {for (k in keys) printf "%s: base %.1f variant %.1f (%+.1f %%)\n", k, v[k, "b"] / n[k, "b"],
         v[k, "s"] / n[k, "s"], 100 * (v[k, "s"] / n[k, "s"] / (v[k, "b"] / n[k, "b"]) - 1)}'
else
  echo "usage: $0 build|run ..." >&2
  exit 2
fi
