// Light declarations shared by the dispatcher (fwd_api.cu) and the instantiation units.
#pragma once

#include <cuda_runtime.h>
#include <cutlass/numeric_types.h>

#include <algorithm>
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

// Split-KV (num_splits): each tile's key blocks are divided among S CTAs, each writing its O
// (fp32, normalised by its own sum) and lse to the workspace, and a combine kernel merges them
// (fwd_api.cu). The packed-GQA kernels take it (at run time, packed or not), so the others stay
// as they are. num_splits 1: none; n > 1: n (at most one per 128 keys); 0 (automatic): when the
// tiles fill less than half of the SMs (decoding with few sequences and K/V heads), as many
// splits as fit on the SMs in one wave, each at least 4 x 128 keys.
inline int fwd_num_splits(const AttnParams& a) {
  if (a.num_splits == 1 || a.seqlen_q <= 0 || a.batch <= 0 || a.heads_q <= 0) return 1;
  const int64_t keys = a.paged() ? int64_t(a.page_table_cols) * a.page_size : a.seqlen_k;
  const int64_t key_blocks = (keys + 127) / 128;
  const int group = fwd_pack_group(a);
  const int tile_heads = group > 1 ? a.heads_kv : a.heads_q;
  int64_t splits = a.num_splits;
  if (splits == 0) {
    int device = 0, sms = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess)
      return 1;
    const int64_t tiles = (int64_t(group) * a.seqlen_q + 127) / 128 * tile_heads * a.batch;
    if (2 * tiles > sms) return 1;
    // (Rounded down: one more would leave a second wave of a few CTAs on some SMs.)
    splits = std::min<int64_t>(sms / tiles, key_blocks / 4);
  }
  // (One split per 128 keys at most; grid y of the one-tile-per-CTA kernels holds heads x splits.)
  splits = std::min<int64_t>({splits, key_blocks, 256, 65535 / tile_heads});
  return splits > 1 ? int(splits) : 1;
}

// The forward's workspace: a tile counter, then with split-KV the partial O (splits, heads_q,
// rows, d_v) and lse (splits, heads_q, rows), fp32, rows = total_q (varlen q) or batch x seqlen_q.
constexpr size_t kFwdCounterBytes = 256;
FA4_HOST_DEVICE int64_t fwd_partial_rows(const AttnParams& a) {
  return a.q_varlen() ? int64_t(a.total_q) : int64_t(a.batch) * a.seqlen_q;
}
inline size_t fwd_partial_bytes(const AttnParams& a, int splits) {
  const int64_t slots = int64_t(splits) * a.heads_q * fwd_partial_rows(a);
  return size_t(slots) * (a.head_dim_v + 1) * sizeof(float);
}

// Defined in instantiations/fwd_<dtype>_hdim<d>[_<d_v>].cu: the launch, and the workspace the
// kernel it picks wants (16 bytes for a tile counter, else 0).
template <class Element, int kHeadDim, int kHeadDimV>
cudaError_t run_fwd_hdim(const AttnParams& a, int* tile_counter, cudaStream_t stream);
template <class Element, int kHeadDim, int kHeadDimV>
size_t fwd_workspace_bytes_hdim(const AttnParams& a);

}  // namespace fa4::sm90
