// One ablation kernel: the table's config for ABL_D with the FA4 switches given by -D (ABL_CAUSAL,
// ABL_RESCALE, ABL_POLY, ABL_PP), the key-block size ABL_BN (0: the table's), the consumer
// warpgroups ABL_WG (64 query rows each) and the intra-warpgroup overlap ABL_OVL. build.sh compiles
// this file once per line of its variants file, so the kernels build in parallel.
#include "sm90/fwd_launch_template.h"
#include "sm90/test/ablation.h"

namespace fa4::sm90::ablation {
namespace {

using Config = HdimConfig<ABL_D, ABL_D>;
constexpr int kBlockN = ABL_BN > 0 ? ABL_BN : Config::kBlockN;
using Traits = FwdTraits<cutlass::bfloat16_t, ABL_D, ABL_D, kBlockN, Config::kStages,
                         bool(ABL_CAUSAL), false, bool(ABL_RESCALE), ABL_POLY, bool(ABL_OVL), bool(ABL_PP),
                         false, ABL_WG>;

cudaError_t run(const AttnParams& a, cudaStream_t stream) {
  return launch_fwd<Traits>(a, stream, Traits::kTileCounter ? zeroed_tile_counter(stream) : nullptr);
}

const bool registered = [] {
  variants().push_back({ABL_D, kBlockN, ABL_WG, bool(ABL_CAUSAL), bool(ABL_RESCALE), ABL_POLY, bool(ABL_PP), bool(ABL_OVL), run});
  return true;
}();

}  // namespace
}  // namespace fa4::sm90::ablation
