// One head dim's dispatched backward main kernels for bench_bwd (compiled once per -DBB_D), with
// the tile config of the tree's own table (FA4_SM90_DEFINE_RUN_BWD_HDIM, as in instantiations/).
#include "sm90/bwd_launch_template.h"
#include "sm90/test/bench_bwd.h"

FA4_SM90_DEFINE_RUN_BWD_HDIM(cutlass::bfloat16_t, BB_D, BB_D)

template <>
cudaError_t bb_run<BB_D>(const fa4::AttnBwdParams& a, const fa4::sm90::BwdScratch& s,
                         cudaStream_t stream) {
  return fa4::sm90::run_bwd_hdim<cutlass::bfloat16_t, BB_D, BB_D>(a, s, stream);
}
