#!/bin/bash
# Builds bench_bwd (the backward main-kernel timer) from the tree it runs in:
#   build_bench_bwd.sh OUT_BINARY [JOBS]   (run from the tree's root; CUTLASS from $CUTLASS_INC;
#   head dims from $BB_DIMS, default "64 128 256"; BB_TRACE=1, see bench/trace_bwd.py; extra
#   nvcc flags from $BB_FLAGS, e.g. -D switches of an experiment)
# The harness sources are taken from $BB_SRC (default: this tree's csrc/sm90/test), so that an
# old tree without them can be timed with the current harness.
set -e
OUTBIN=$1
JOBS=${2:-3}
CUT=${CUTLASS_INC:-third_party/cutlass/include}
SRC=${BB_SRC:-csrc/sm90/test}
OBJ=$(mktemp -d)
mkdir -p $OBJ/inc/sm90/test && cp $SRC/bench_bwd.h $OBJ/inc/sm90/test/
FLAGS="-std=c++17 -O3 -DNDEBUG -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr --expt-extended-lambda --use_fast_math -Xptxas -v -I$OBJ/inc -Icsrc -I$CUT ${BB_FLAGS:-}"
export FLAGS OBJ SRC
DIMS=${BB_DIMS:-64 128 256}
# BB_TRACE=1: a tree instrumented by bench/trace_bwd.py, one head dim; the binary prints timelines.
if [ "${BB_TRACE:-0}" = 1 ]; then
  [ "$(echo $DIMS | wc -w)" = 1 ] || { echo "BB_TRACE=1 takes one head dim in BB_DIMS"; exit 1; }
  FLAGS="$FLAGS -DBB_TRACE=$DIMS"
fi
printf "%s\n" $DIMS | xargs -P "$JOBS" -I{} sh -c 'nvcc $FLAGS -DBB_D={} -c $SRC/bench_bwd_kernels.cu -o $OBJ/k{}.o > $OBJ/k{}.log 2>&1 || { cat $OBJ/k{}.log; exit 255; }'
nvcc $FLAGS $(printf -- "-DBB_HAS_D%s " $DIMS) -c $SRC/bench_bwd.cu -o $OBJ/main.o
cat $OBJ/k*.log > ${OUTBIN}.ptxas.log
if grep -q "wgmma.*serialized\|warpgroup.wait is injected" ${OUTBIN}.ptxas.log; then
  grep "wgmma.*serialized\|warpgroup.wait is injected" ${OUTBIN}.ptxas.log
  echo "refused: ptxas serialised wgmma or injected a warpgroup.wait"; exit 1
fi
nvcc -gencode=arch=compute_90a,code=sm_90a $OBJ/*.o -o $OUTBIN
echo "built $OUTBIN"
