// Light declarations shared by the dispatcher (fwd_api.cu) and the instantiation units.
#pragma once

#include <cuda_runtime.h>
#include <cutlass/numeric_types.h>

#include "common/params.h"
#include "sm90/fwd_config.h"

namespace fa4::sm90 {

// Tile configuration of each (head_dim, head_dim_v) row of FA4_SM90_FWD_HDIM_TABLE.
template <int kHeadDim, int kHeadDimV>
struct HdimConfig {
  static constexpr bool kBuilt = false;
};
#define FA4_SM90_HDIM_CONFIG(D, DV, BN, ST, OVL, PP, LWG, SWG, SBN) \
  template <>                                             \
  struct HdimConfig<D, DV> {                              \
    static constexpr bool kBuilt = true;                  \
    static constexpr int kBlockN = BN;                    \
    static constexpr int kStages = ST;                    \
    static constexpr bool kOverlap = OVL;                 \
    static constexpr bool kPingPong = PP;                 \
    static constexpr int kLongWG = LWG;                   \
    static constexpr int kShortWG = SWG;                  \
    static constexpr int kShortBlockN = SBN;              \
  };
FA4_SM90_FWD_HDIM_TABLE(FA4_SM90_HDIM_CONFIG)
#undef FA4_SM90_HDIM_CONFIG

// Defined in instantiations/fwd_<dtype>_hdim<d>[_<d_v>].cu: the launch, and the workspace the
// kernel it picks wants (16 bytes for a tile counter, else 0).
template <class Element, int kHeadDim, int kHeadDimV>
cudaError_t run_fwd_hdim(const AttnParams& a, int* tile_counter, cudaStream_t stream);
template <class Element, int kHeadDim, int kHeadDimV>
size_t fwd_workspace_bytes_hdim(const AttnParams& a);

}  // namespace fa4::sm90
