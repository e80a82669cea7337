#!/bin/bash
# Builds the standalone sm90 forward test: build.sh OUT_BINARY [JOBS] [VARIANTS_FILE]
# Run from the repository root; CUTLASS headers from third_party/cutlass/include (or $CUTLASS_INC).
# Links the dispatched kernels (instantiations/) and one ablation kernel per line of
# VARIANTS_FILE (default ablation_variants.txt; ablation_variant.cu compiled with that line's -D
# settings).
set -e
OUTBIN=${1:-csrc/sm90/test/test_fwd}
JOBS=${2:-2}
VARIANTS=${3:-csrc/sm90/test/ablation_variants.txt}
CUT=${CUTLASS_INC:-third_party/cutlass/include}
OBJ=$(mktemp -d)
FLAGS="-std=c++17 -O3 -DNDEBUG -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr --expt-extended-lambda -Xptxas -v -Icsrc -I$CUT"
JOBLIST=$OBJ/jobs
for src in csrc/sm90/test/test_fwd.cu csrc/sm90/fwd_api.cu csrc/sm90/instantiations/fwd_*.cu; do
  echo "$src $(basename "$src" .cu)" >> "$JOBLIST"
done
grep -v '^#' "$VARIANTS" | while read -r d causal rescale poly pp bn wg ovl; do
  [ -n "$d" ] || continue
  bn=${bn:-0}
  wg=${wg:-2}
  ovl=${ovl:-1}
  echo "csrc/sm90/test/ablation_variant.cu abl_d${d}_c${causal}_r${rescale}_p${poly}_pp${pp}_bn${bn}_wg${wg}_o${ovl} -DABL_D=$d -DABL_CAUSAL=$causal -DABL_RESCALE=$rescale -DABL_POLY=$poly -DABL_PP=$pp -DABL_BN=$bn -DABL_WG=$wg -DABL_OVL=$ovl" >> "$JOBLIST"
done
export FLAGS OBJ
xargs -P "$JOBS" -L 1 sh -c 'src=$0; name=$1; shift; nvcc $FLAGS "$@" -c $src -o $OBJ/$name.o > $OBJ/$name.log 2>&1 || { cat $OBJ/$name.log; exit 255; }' < "$JOBLIST"
cat $OBJ/*.log > ${OUTBIN}.ptxas.log
nvcc -gencode=arch=compute_90a,code=sm_90a $OBJ/*.o -o $OUTBIN
echo "built $OUTBIN ($(grep -c . "$JOBLIST") objects)"
