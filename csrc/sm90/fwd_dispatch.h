// Light declarations shared by the dispatcher (fwd_api.cu) and the instantiation units.
#pragma once

#include <cuda_runtime.h>
#include <cutlass/numeric_types.h>

#include <cstdint>

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

// Packed GQA (FwdKernelParams::pack_group): rows of a packed sequence are q_len * G, an int in
// the kernels, kept below this so that a tile's row range cannot overflow.
constexpr int64_t kMaxPackedRows = int64_t(1) << 30;

// G = heads_q / heads_kv when the forward packs the query heads of each K/V head into its tiles'
// rows, else 1. pack_gqa 1 / 0 decide; -1 (automatic) packs when one head per tile would use the
// 128-row tiles' rows less than 0.9 x as well as the packed rows do (short query sequences:
// decoding, chunked prefill), where packing also streams each K/V head once instead of G times.
inline int fwd_pack_group(const AttnParams& a) {
  const int group = a.heads_kv > 0 ? a.heads_q / a.heads_kv : 1;
  if (group <= 1 || a.pack_gqa == 0 || a.seqlen_q <= 0) return 1;
  const int64_t packed = int64_t(group) * a.seqlen_q;
  if (packed > kMaxPackedRows) return 1;  // (explicit packing is refused there)
  if (a.pack_gqa == 1) return group;
  auto used = [](int64_t rows) { return double(rows) / double((rows + 127) / 128 * 128); };
  return used(a.seqlen_q) < 0.9 * used(packed) ? group : 1;
}

// Defined in instantiations/fwd_<dtype>_hdim<d>[_<d_v>].cu: the launch, and the workspace the
// kernel it picks wants (16 bytes for a tile counter, else 0).
template <class Element, int kHeadDim, int kHeadDimV>
cudaError_t run_fwd_hdim(const AttnParams& a, int* tile_counter, cudaStream_t stream);
template <class Element, int kHeadDim, int kHeadDimV>
size_t fwd_workspace_bytes_hdim(const AttnParams& a);

}  // namespace fa4::sm90
