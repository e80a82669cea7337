#!/bin/bash
# Builds the standalone sm90 forward test: build.sh OUT_BINARY [JOBS]
# Run from the repository root; CUTLASS headers from third_party/cutlass/include (or $CUTLASS_INC).
set -e
OUTBIN=${1:-csrc/sm90/test/test_fwd}
JOBS=${2:-2}
CUT=${CUTLASS_INC:-third_party/cutlass/include}
OBJ=$(mktemp -d)
FLAGS="-std=c++17 -O3 -DNDEBUG -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr --expt-extended-lambda -Xptxas -v -Icsrc -I$CUT"
SRCS="csrc/sm90/test/test_fwd.cu csrc/sm90/fwd_api.cu $(ls csrc/sm90/instantiations/*.cu)"
printf '%s\n' $SRCS | xargs -P "$JOBS" -I{} sh -c 'nvcc '"$FLAGS"' -c {} -o '"$OBJ"'/$(basename {} .cu).o > '"$OBJ"'/$(basename {} .cu).log 2>&1 || { cat '"$OBJ"'/$(basename {} .cu).log; exit 255; }'
cat $OBJ/*.log > ${OUTBIN}.ptxas.log
nvcc -gencode=arch=compute_90a,code=sm_90a $OBJ/*.o -o $OUTBIN
echo "built $OUTBIN"
