// Host side of the sm90 forward kernel: TMA descriptors from AttnParams strides, launch, and the
// per-(dtype, head_dim) variant dispatch used by the instantiation units.
#pragma once
#include <cstdlib>
#include <cstring>

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common/mask.h"
#include "common/params.h"
#include "common/softmax.h"
#include "sm90/fwd_config.h"
#include "sm90/fwd_dispatch.h"
#include "sm90/fwd_kernel.h"
#include "sm90/gmem_layout.h"
#include "sm90/variant_dispatch.h"

namespace fa4::sm90 {

// Paged KV whose pages are not whole key blocks: the gather kernel (cp.async by the producer
// warpgroup) or TMA row boxes (only where page_size % 8 == 0) of fwd_kv_box_rows rows. The gather
// costs about the same for every page size; the TMA unit costs about the same per box whatever
// its rows, so boxes win only where a stage takes few: at most 2 per column slab of the stage
// (H200, causal 4k, bench/paged_cost.py, gather / boxes: d 128 page 64 (2 boxes) 350-361 /
// 349-359, page 32 (4) 354-358 / 294-302; d 256 page 32 (2) 423-427 / 462-464, page 16 (4)
// 410-412 / 347-348; d 64 page 64 (2) 205-209 / 211-215, page 32 (4) 205-207 / 179-186 TFLOP/s).
// FA4_FWD_PAGED_PATH=gather / boxes overrides the rule (A/B; boxes where page_size % 8 == 0).
inline int fwd_kv_box_rows(int page_size, int block_n) {  // largest power of two <= 64 dividing both
  int rows = 8;
  while (rows < 64 && page_size % (2 * rows) == 0 && block_n % (2 * rows) == 0) rows *= 2;
  return rows;
}
inline bool fwd_paged_gather(const AttnParams& a, int block_n) {
  if (!a.paged() || a.page_size % block_n == 0) return false;
  if (a.page_size % 8 != 0) return true;
  if (const char* env = std::getenv("FA4_FWD_PAGED_PATH"); env != nullptr) {
    if (std::strcmp(env, "gather") == 0) return true;
    if (std::strcmp(env, "boxes") == 0) return false;
  }
  return block_n / fwd_kv_box_rows(a.page_size, block_n) > 2;
}

// tile_counter: a zeroed int for the kTileCounter kernels (nullptr: they walk a fixed order).
template <class Traits>
cudaError_t launch_fwd(const AttnParams& a, cudaStream_t stream, int* tile_counter = nullptr) {
  using namespace cute;
  using Element = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM;
  constexpr int kBlockN = Traits::kBlockN;
  constexpr int kHeadDim = Traits::kHeadDim;
  constexpr int kHeadDimV = Traits::kHeadDimV;
  if (a.batch == 0 || a.seqlen_q == 0 || a.heads_q == 0) return cudaSuccess;
  if (a.q_varlen() && a.total_q == 0) return cudaSuccess;

  FwdKernelParams<Traits> p;
  // q / out: varlen q is one (total_q)-row sequence addressed with a per-batch row offset.
  const int q_rows = a.q_varlen() ? a.total_q : a.seqlen_q;
  const int q_batch = a.q_varlen() ? 1 : a.batch;
  p.layout_q = make_gmem_layout(q_rows, a.head_dim, a.heads_q, q_batch, a.q_row_stride,
                                a.q_head_stride, a.q_batch_stride);
  p.layout_o = make_gmem_layout(q_rows, a.head_dim_v, a.heads_q, q_batch, a.o_row_stride,
                                a.o_head_stride, a.o_batch_stride);
  // k / v: paged KV is (page_size, d, heads_kv, num_pages) with the page stride as batch stride;
  // varlen keys (cu_seqlens_k, no page table) are one (total_k)-row sequence addressed with a
  // per-batch row offset, like varlen q.
  const bool k_varlen = a.cu_seqlens_k != nullptr && !a.paged();
  const int kv_rows = a.paged() ? a.page_size : (k_varlen ? a.total_k : a.seqlen_k);
  const int kv_batch = a.paged() ? a.num_pages : (k_varlen ? 1 : a.batch);
  p.layout_k = make_gmem_layout(kv_rows, a.head_dim, a.heads_kv, kv_batch, a.k_row_stride,
                                a.k_head_stride, a.k_batch_stride);
  p.layout_v = make_gmem_layout(kv_rows, a.head_dim_v, a.heads_kv, kv_batch, a.v_row_stride,
                                a.v_head_stride, a.v_batch_stride);
  Tensor mQ = make_tensor(make_gmem_ptr(static_cast<Element const*>(a.q)), p.layout_q);
  Tensor mK = make_tensor(make_gmem_ptr(static_cast<Element const*>(a.k)), p.layout_k);
  Tensor mV = make_tensor(make_gmem_ptr(static_cast<Element const*>(a.v)), p.layout_v);
  Tensor mO = make_tensor(make_gmem_ptr(static_cast<Element*>(a.out)), p.layout_o);
  p.tma_q = make_tma_copy(SM90_TMA_LOAD{}, mQ, typename Traits::SmemLayoutQ{},
                          Shape<Int<kBlockM>, Int<kHeadDim>>{}, _1{});
  p.tma_k = make_tma_copy(SM90_TMA_LOAD{}, mK, take<0, 2>(typename Traits::SmemLayoutK{}),
                          Shape<Int<kBlockN>, Int<kHeadDim>>{}, _1{});
  p.tma_v = make_tma_copy(SM90_TMA_LOAD{}, mV, take<0, 2>(typename Traits::SmemLayoutV{}),
                          Shape<Int<kBlockN>, Int<kHeadDimV>>{}, _1{});
  p.tma_o = make_tma_copy(SM90_TMA_STORE{}, mO, typename Traits::SmemLayoutO{},
                          Shape<_64, Int<kHeadDimV>>{}, _1{});  // one warpgroup's rows
  // Paged KV with page_size % kBlockN != 0 where the gather kernel does not run
  // (fwd_paged_gather): the producer loads each stage as boxes of kv_box_rows rows, the largest
  // power of two <= 64 that divides page_size and kBlockN. The TMA unit costs about the same per
  // box whatever its rows (8-row boxes ran every page size from 8 to 64 at ~117 TFLOP/s where
  // unpaged runs 406, H100), so fewer, taller boxes. The kernel keeps 8-row copy types; only the
  // descriptors' box differs.
  p.kv_row_groups = !Traits::kGather && a.paged() && a.page_size % kBlockN != 0;
  if (p.kv_row_groups) {
    p.kv_box_rows = fwd_kv_box_rows(a.page_size, kBlockN);
    p.tma_k_rows = make_tma_copy(SM90_TMA_LOAD{}, mK, typename Traits::SmemLayoutKRows{},
                                 Shape<Int<Traits::kRowGroup>, Int<kHeadDim>>{}, _1{});
    p.tma_v_rows = make_tma_copy(SM90_TMA_LOAD{}, mV, typename Traits::SmemLayoutVRows{},
                                 Shape<Int<Traits::kRowGroup>, Int<kHeadDimV>>{}, _1{});
    auto set_box = [&](auto rows) {
      constexpr int kRows = decltype(rows)::value;
      p.tma_k_rows.tma_desc_ =
          make_tma_copy(SM90_TMA_LOAD{}, mK, typename Traits::template SmemLayoutKRowsOf<kRows>{},
                        Shape<Int<kRows>, Int<kHeadDim>>{}, _1{}).tma_desc_;
      p.tma_v_rows.tma_desc_ =
          make_tma_copy(SM90_TMA_LOAD{}, mV, typename Traits::template SmemLayoutVRowsOf<kRows>{},
                        Shape<Int<kRows>, Int<kHeadDimV>>{}, _1{}).tma_desc_;
    };
    if (p.kv_box_rows == 16) set_box(Int<16>{});
    if (p.kv_box_rows == 32) set_box(Int<32>{});
    if constexpr (kBlockN % 64 == 0 && kBlockN > 64) {
      if (p.kv_box_rows == 64) set_box(Int<64>{});
    }
  }
  p.attn = a;
  p.qhead_per_kvhead = a.heads_q / a.heads_kv;
  p.scale_log2 = a.softmax_scale * kLog2e;
  p.pack_group = Traits::kPackGQA ? fwd_pack_group(a) : 1;
  p.num_splits = Traits::kPackGQA ? fwd_num_splits(a) : 1;
  if (p.num_splits > 1 && tile_counter == nullptr) return cudaErrorInvalidValue;
  p.partial_rows = fwd_partial_rows(a);
  p.o_partial = p.num_splits > 1 ? reinterpret_cast<float*>(reinterpret_cast<char*>(tile_counter) +
                                                            kFwdCounterBytes)
                                 : nullptr;
  p.lse_partial = p.o_partial != nullptr
                      ? p.o_partial + int64_t(p.num_splits) * a.heads_q * p.partial_rows * kHeadDimV
                      : nullptr;
  // (Tile "heads" enumerate (head, split) pairs, split fastest.)
  p.tile_heads = (p.pack_group > 1 ? a.heads_kv : a.heads_q) * p.num_splits;
  p.store_o_predicated = a.q_varlen() || a.seqused_q != nullptr || p.pack_group > 1;
  p.zero_v_tail = a.paged() || a.seqused_k != nullptr || k_varlen;

  p.num_m_blocks = int((int64_t(p.pack_group) * a.seqlen_q + kBlockM - 1) / kBlockM);
  p.tile_counter = Traits::kTileCounter ? tile_counter : nullptr;
  {
    // Heaviest-first order of the kTileCounter kernels: groups of (head, batch) pairs whose K/V
    // (seqlen_k rows of d + d_v) take <= 12 MB together: at 16k, d 128 one pair at a time, as the
    // non-persistent grid had (24 MB measured -4 % there, H200).
    constexpr int64_t kL2GroupBytes = int64_t(12) << 20;
    const int64_t pair_bytes =
        std::max<int64_t>(1, int64_t(a.seqlen_k) * (kHeadDim + kHeadDimV) * sizeof(Element));
    const int64_t pairs = std::max<int64_t>(1, int64_t(p.tile_heads) * a.batch);
    p.group_pairs = int(std::clamp<int64_t>(kL2GroupBytes / pair_bytes, 1, pairs));
  }

  auto kernel = fwd_kernel<Traits>;
  constexpr int smem = Traits::kSmemBytes;
  cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (err != cudaSuccess) return err;
  dim3 grid(p.num_m_blocks, p.tile_heads, a.batch);
  if constexpr (Traits::kPersistent) {
    // One CTA per SM (the kernel's shared memory allows no second), each walking its tiles.
    int device = 0, num_sms = 0;
    err = cudaGetDevice(&device);
    if (err == cudaSuccess)
      err = cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, device);
    if (err != cudaSuccess) return err;
    const int64_t tiles = int64_t(p.num_m_blocks) * p.tile_heads * a.batch;
    grid = dim3(unsigned(std::min<int64_t>(tiles, num_sms)), 1, 1);
  }
  kernel<<<grid, Traits::kNumThreads, smem, stream>>>(p);
  return cudaGetLastError();
}

// The kernel variant that serves `a` in one (dtype, head_dim, head_dim_v) row of
// FA4_SM90_FWD_HDIM_TABLE: returns f(Traits{}) for its FwdTraits. The one selection that both the
// launch and the workspace size follow.
template <class Element, int kHeadDim, int kHeadDimV, int kBlockN, int kStages, bool kOverlap,
          bool kPingPong, int kLongWG, int kShortWG, int kShortBlockN, class F>
auto with_fwd_traits(const AttnParams& a, F&& f) {
  static_assert(kBlockN % 32 == 0, "the gather's 32-row passes");
  if (fwd_paged_gather(a, kBlockN)) {
    // The gather kernel, built with the local mask path only (it also serves causal-free,
    // window-free masks) and packed GQA taken or not at run time, to keep the build small.
    auto gather = [&](auto softcap) {
      return f(FwdTraits<Element, kHeadDim, kHeadDimV, kBlockN, kStages, true,
                         decltype(softcap)::value, kDefaultRescale, kDefaultPolyPer8, kOverlap,
                         kPingPong, /*kGather=*/true, 2, /*kPackGQA=*/true>{});
    };
    return a.softcap > 0.f ? gather(std::true_type{}) : gather(std::false_type{});
  }
  if (fwd_pack_group(a) > 1 || fwd_num_splits(a) > 1) {
    // Packed GQA, or split-KV (packed or not): two consumer warpgroups (128 rows of (position,
    // head) pairs per tile).
    return dispatch_local_softcap(has_local_mask(a), a.softcap > 0.f, [&](auto local, auto softcap) {
      return f(FwdTraits<Element, kHeadDim, kHeadDimV, kBlockN, kStages, decltype(local)::value,
                         decltype(softcap)::value, kDefaultRescale, kDefaultPolyPer8, kOverlap,
                         kPingPong, false, 2, /*kPackGQA=*/true>{});
    });
  }
  auto with_wg = [&](auto num_wg) {
    constexpr int kWG = decltype(num_wg)::value;
    return dispatch_local_softcap(has_local_mask(a), a.softcap > 0.f, [&](auto local, auto softcap) {
      return f(FwdTraits<Element, kHeadDim, kHeadDimV, kBlockN, kStages, decltype(local)::value,
                         decltype(softcap)::value, kDefaultRescale, kDefaultPolyPer8, kOverlap,
                         kPingPong && kWG == 2, false, kWG>{});
    });
  };
  if constexpr (kShortWG != 2) {
    if (!has_local_mask(a) && a.seqlen_q < kLongSeqlenQ) {
      auto short_rows = [&](auto softcap) {
        return f(FwdTraits<Element, kHeadDim, kHeadDimV, kShortBlockN, kStages, false,
                           decltype(softcap)::value, kDefaultRescale, kDefaultPolyPer8, kOverlap,
                           false, false, kShortWG>{});
      };
      return a.softcap > 0.f ? short_rows(std::true_type{}) : short_rows(std::false_type{});
    }
  }
  if constexpr (kLongWG != 2) {
    if (a.seqlen_q >= (has_local_mask(a) ? kLongSeqlenQLocal : kLongSeqlenQ))
      return with_wg(std::integral_constant<int, kLongWG>{});
  }
  return with_wg(std::integral_constant<int, 2>{});
}

}  // namespace fa4::sm90

// Body of one instantiation unit: run_fwd_hdim / fwd_workspace_bytes_hdim<ELEMENT, HDIM, HDIM_V>
// with the row's tile config.
#define FA4_SM90_DEFINE_RUN_FWD_HDIM(ELEMENT, HDIM, HDIM_V)                                    \
  namespace fa4::sm90 {                                                                        \
  template <class F>                                                                           \
  auto with_fwd_traits_##HDIM##_##HDIM_V(const AttnParams& a, F&& f) {                         \
    using C = HdimConfig<HDIM, HDIM_V>;                                                        \
    return with_fwd_traits<ELEMENT, HDIM, HDIM_V, C::kBlockN, C::kStages, C::kOverlap,         \
                           C::kPingPong, C::kLongWG, C::kShortWG, C::kShortBlockN>(a, f);      \
  }                                                                                            \
  template <>                                                                                  \
  cudaError_t run_fwd_hdim<ELEMENT, HDIM, HDIM_V>(const AttnParams& a, int* tile_counter,     \
                                                 cudaStream_t stream) {                        \
    return with_fwd_traits_##HDIM##_##HDIM_V(a, [&](auto traits) {                             \
      return launch_fwd<decltype(traits)>(a, stream, tile_counter);                            \
    });                                                                                        \
  }                                                                                            \
  template <>                                                                                  \
  size_t fwd_workspace_bytes_hdim<ELEMENT, HDIM, HDIM_V>(const AttnParams& a) {                \
    return with_fwd_traits_##HDIM##_##HDIM_V(                                                 \
        a, [](auto traits) { return decltype(traits)::kTileCounter ? size_t(16) : size_t(0); }); \
  }                                                                                            \
  }
