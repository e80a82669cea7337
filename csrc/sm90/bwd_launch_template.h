// Host side of the sm90 backward main kernel: TMA descriptors from AttnBwdParams strides, launch,
// and the per-(dtype, head_dim) variant dispatch used by the instantiation units.
#pragma once

#include <cuda_runtime.h>

#include "common/mask.h"
#include "common/params.h"
#include "common/softmax.h"
#include "sm90/bwd_config.h"
#include "sm90/bwd_dispatch.h"
#include "sm90/bwd_kernel.h"
#include "sm90/gmem_layout.h"
#include "sm90/variant_dispatch.h"

namespace fa4::sm90 {

template <class Traits>
cudaError_t launch_bwd(const AttnBwdParams& a, const BwdScratch& scratch, cudaStream_t stream) {
  using namespace cute;
  using Element = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM;
  constexpr int kBlockN = Traits::kBlockN;
  constexpr int kHeadDim = Traits::kHeadDim;
  constexpr int kHeadDimV = Traits::kHeadDimV;
  const dim3 grid((a.seqlen_k + kBlockN - 1) / kBlockN * scratch.head_splits, a.heads_kv,
                  a.batch);
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return cudaSuccess;

  BwdKernelParams<Traits> p;
  const bool k_varlen = a.cu_seqlens_k != nullptr;
  const int q_rows = a.q_varlen() ? a.total_q : a.seqlen_q;
  const int q_batch = a.q_varlen() ? 1 : a.batch;
  const int kv_rows = k_varlen ? a.total_k : a.seqlen_k;
  const int kv_batch = k_varlen ? 1 : a.batch;
  p.layout_q = make_gmem_layout(q_rows, a.head_dim, a.heads_q, q_batch, a.q_row_stride,
                                a.q_head_stride, a.q_batch_stride);
  p.layout_do = make_gmem_layout(q_rows, a.head_dim_v, a.heads_q, q_batch, a.do_row_stride,
                                 a.do_head_stride, a.do_batch_stride);
  p.layout_k = make_gmem_layout(kv_rows, a.head_dim, a.heads_kv, kv_batch, a.k_row_stride,
                                a.k_head_stride, a.k_batch_stride);
  p.layout_v = make_gmem_layout(kv_rows, a.head_dim_v, a.heads_kv, kv_batch, a.v_row_stride,
                                a.v_head_stride, a.v_batch_stride);
  Tensor mQ = make_tensor(make_gmem_ptr(static_cast<Element const*>(a.q)), p.layout_q);
  Tensor mdO = make_tensor(make_gmem_ptr(static_cast<Element const*>(a.dout)), p.layout_do);
  Tensor mK = make_tensor(make_gmem_ptr(static_cast<Element const*>(a.k)), p.layout_k);
  Tensor mV = make_tensor(make_gmem_ptr(static_cast<Element const*>(a.v)), p.layout_v);
  p.tma_q = make_tma_copy(SM90_TMA_LOAD{}, mQ, take<0, 2>(typename Traits::SmemLayoutQ{}),
                          Shape<Int<kBlockM>, Int<kHeadDim>>{}, _1{});
  p.tma_do = make_tma_copy(SM90_TMA_LOAD{}, mdO, take<0, 2>(typename Traits::SmemLayoutdO{}),
                           Shape<Int<kBlockM>, Int<kHeadDimV>>{}, _1{});
  p.tma_k = make_tma_copy(SM90_TMA_LOAD{}, mK, typename Traits::SmemLayoutK{},
                          Shape<Int<kBlockN>, Int<kHeadDim>>{}, _1{});
  p.tma_v = make_tma_copy(SM90_TMA_LOAD{}, mV, typename Traits::SmemLayoutV{},
                          Shape<Int<kBlockN>, Int<kHeadDimV>>{}, _1{});
  p.attn = a;
  p.scratch = scratch;
  p.scale_log2 = a.softmax_scale * kLog2e;
  p.zero_q_tail = a.q_varlen() || a.seqused_q != nullptr;
  p.zero_kv_tail = k_varlen || a.seqused_k != nullptr;
  if (Traits::kTmaStoreDKV && !p.zero_kv_tail) {  // the kernel's TMA stores of dK / dV
    p.layout_dk = make_gmem_layout(kv_rows, a.head_dim, a.heads_kv, kv_batch, a.dk_row_stride,
                                   a.dk_head_stride, a.dk_batch_stride);
    p.layout_dv = make_gmem_layout(kv_rows, a.head_dim_v, a.heads_kv, kv_batch, a.dv_row_stride,
                                   a.dv_head_stride, a.dv_batch_stride);
    Tensor mdK = make_tensor(make_gmem_ptr(static_cast<Element*>(a.dk)), p.layout_dk);
    Tensor mdV = make_tensor(make_gmem_ptr(static_cast<Element*>(a.dv)), p.layout_dv);
    p.tma_dk = make_tma_copy(SM90_TMA_STORE{}, mdK, typename Traits::SmemLayoutK{},
                             Shape<Int<kBlockN>, Int<kHeadDim>>{}, _1{});
    p.tma_dv = make_tma_copy(SM90_TMA_STORE{}, mdV, typename Traits::SmemLayoutV{},
                             Shape<Int<kBlockN>, Int<kHeadDimV>>{}, _1{});
  }

  auto kernel = bwd_kernel<Traits>;
  constexpr int smem = Traits::kSmemBytes;
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (err != cudaSuccess) return err;
  cudaLaunchAttribute attr;
  const cudaLaunchConfig_t cfg =
      launch_config(grid, dim3(Traits::kNumThreads), smem, stream, scratch.pdl_main, &attr);
  return cudaLaunchKernelEx(&cfg, kernel, p);
}

// The dispatched variants of one (dtype, head_dim, head_dim_v) row of FA4_SM90_BWD_HDIM_TABLE.
template <class Element, int kHeadDim, int kHeadDimV, int kBlockN, int kBlockM, int kStages,
          bool kPingPong>
cudaError_t run_bwd_hdim_impl(const AttnBwdParams& a, const BwdScratch& scratch,
                              cudaStream_t stream) {
  return dispatch_local_softcap(has_local_mask(a), a.softcap > 0.f, [&](auto local, auto softcap) {
    return launch_bwd<BwdTraits<Element, kHeadDim, kHeadDimV, kBlockN, kBlockM, kStages, kPingPong,
                                decltype(local)::value, decltype(softcap)::value>>(a, scratch, stream);
  });
}

}  // namespace fa4::sm90

// Body of one instantiation unit: run_bwd_hdim<ELEMENT, HDIM, HDIM_V> with the row's tile config.
#define FA4_SM90_DEFINE_RUN_BWD_HDIM(ELEMENT, HDIM, HDIM_V)                                     \
  namespace fa4::sm90 {                                                                         \
  template <>                                                                                   \
  cudaError_t run_bwd_hdim<ELEMENT, HDIM, HDIM_V>(const AttnBwdParams& a,                       \
                                                  const BwdScratch& scratch, cudaStream_t stream) { \
    using C = BwdHdimConfig<HDIM, HDIM_V>;                                                      \
    return run_bwd_hdim_impl<ELEMENT, HDIM, HDIM_V, C::kBlockN, C::kBlockM, C::kStages,         \
                             C::kPingPong>(a, scratch, stream);                                 \
  }                                                                                             \
  }
