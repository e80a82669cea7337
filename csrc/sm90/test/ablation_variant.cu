// One ablation kernel: the table's tile config for ABL_D with the FA4 switches given by -D
// (ABL_CAUSAL, ABL_RESCALE, ABL_POLY, ABL_PP). build.sh compiles this file once per line of
// ablation_variants.txt, so the kernels build in parallel.
#include "sm90/fwd_launch_template.h"
#include "sm90/test/ablation.h"

namespace fa4::sm90::ablation {
namespace {

using Config = HdimConfig<ABL_D, ABL_D>;
using Traits = FwdTraits<cutlass::bfloat16_t, ABL_D, ABL_D, Config::kBlockN, Config::kStages,
                         bool(ABL_CAUSAL), false, bool(ABL_RESCALE), ABL_POLY, true, bool(ABL_PP)>;

cudaError_t run(const AttnParams& a, cudaStream_t stream) { return launch_fwd<Traits>(a, stream); }

const bool registered = [] {
  variants().push_back({ABL_D, bool(ABL_CAUSAL), bool(ABL_RESCALE), ABL_POLY, bool(ABL_PP), run});
  return true;
}();

}  // namespace
}  // namespace fa4::sm90::ablation
