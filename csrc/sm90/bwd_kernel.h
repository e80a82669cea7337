// Hopper (sm_90a) backward attention kernel: warp-specialized, TMA + WGMMA.
//
// One CTA per (key block of kBlockN keys, kv head, batch entry); it owns dK and dV of its
// keys, accumulated in registers over every query head of its GQA group and every query block that
// sees its keys, so dK / dV need no atomics and no second pass (GQA included). With few kv heads
// (MQA, small batch) a group's query heads are split over head_splits CTAs instead, each writing
// fp32 partial sums that a fixed-order reduction adds (bwd_api.cu).
//   WG0  producer: one thread TMA-loads K and V once (kKThenQ: V after the first Q block), then
//        streams Q (+ lse) and dO (+ D) blocks of kBlockM rows through two kStages-deep
//        PipelineTmaAsync pipelines (lse and D with bulk copies into the same stage barriers).
//   WG1, WG2  consumers, 64 keys each (kBlockN = 128). Per query block, in the transposed orientation so that the
//        key dimension is the WGMMA M dimension and P / dS stay in registers for dV and dK:
//          S^T = K Q^T, dP^T = V dO^T             (SS-WGMMA)
//          P^T = exp2(S^T * scale - lse),  dS^T = P^T o (dP^T - D)     (registers)
//          dV += P^T dO,  dK += dS^T Q            (RS-WGMMA, P / dS as the register A operand)
//          dQ_partial = dS K                      (SS-WGMMA, dS through shared memory via
//                                                  stmatrix; the two warpgroups split it along
//                                                  M or N)
//        issued in the order dV, dQ, dK so that staging dQ_partial in shared memory (fp32, in
//        dq_accum's layout, BwdScratch) overlaps the dK GEMM; with one pipeline stage (d = 256) the
//        order is dV, dK, dQ so the Q / dO stage is released before dQ. The exp2 loop has a masked
//        and an unmasked variant, chosen per tile. kPingPong (d = 64, 128): the warpgroups take turns issuing their GEMMs (S,
//        dP | dQ of the previous block, dV, dK): dQ of a block is issued one block later, so no
//        warpgroup waits for the other's dS inside a block.
//        kBlockN = 64 (d = 192, 256, where dK + dV of 64 keys do not fit one warpgroup's
//        registers): both warpgroups see all 64 keys; they split the queries of S^T / dP^T and the
//        head dimension of dV, dK and dQ, and P^T / dS^T go through shared memory (SS-WGMMA).
//   WG0, warp 1: adds each staged dQ_partial into the fp32 accumulator in global memory with bulk
//        reduce-adds (cp.reduce.async.bulk .add.f32), so the math warps never wait on L2 atomics.
//        With ping-pong each warpgroup hands its half over on its own full / empty mbarriers
//        (kdQPerWG), so that the handover does not line the warpgroups up; otherwise the whole
//        buffer is reduced once both warpgroups staged their halves, and its "free" signal is an
//        mbarrier that each warpgroup waits on by itself.
//        Deterministic mode orders those additions: the key blocks of one query block
//        add in increasing key order (a semaphore per query block; a key block only waits for
//        lower key blocks of the same (batch, head), which were scheduled before it).
// Epilogue: dK (times softmax_scale) and dV converted, staged in shared memory (aliasing K / V)
// and stored with two TMA stores (kTmaStoreDKV, batched keys) or with 16-byte stores of the keys
// inside the sequence.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <cute/tensor.hpp>
#include <cute/arch/copy_sm90.hpp>
#include <cute/arch/copy_sm90_tma.hpp>
#include <cute/atom/copy_traits_sm90.hpp>
#include <cute/arch/mma_sm90.hpp>
#include <cute/atom/copy_traits_sm90_tma.hpp>
#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>
#include <cutlass/cutlass.h>
#include <cutlass/numeric_types.h>
#include <cutlass/pipeline/pipeline.hpp>

#include "common/mask.h"
#include "common/params.h"
#include "common/softmax.h"
#include "sm90/bwd_scratch.h"
#include "sm90/kernel_utils.h"

namespace fa4::sm90 {

using namespace cute;

template <class Element_, int kHeadDim_, int kHeadDimV_, int kBlockN_, int kBlockM_, int kStages_,
          bool kPingPong_, bool kIsLocal_, bool kHasSoftcap_>
struct BwdTraits {
  using Element = Element_;
  static constexpr int kHeadDim = kHeadDim_;    // of q, k, dq, dk
  static constexpr int kHeadDimV = kHeadDimV_;  // of v, out, dout, dv
  static constexpr int kBlockN = kBlockN_;  // keys per CTA
  static constexpr int kBlockM = kBlockM_;  // query rows per pipeline stage
  static constexpr int kStages = kStages_;
  static constexpr bool kIsLocal = kIsLocal_;
  static constexpr bool kHasSoftcap = kHasSoftcap_;
  // kBlockN = 128: each consumer warpgroup owns 64 keys (P, dS in registers for dV, dK).
  // kBlockN = 64: the warpgroups split the queries of S / dP and the head dimension of dK, dV and
  // dQ (P, dS through shared memory); see bwd_config.h.
  static constexpr bool kSplitD = kBlockN == 64;
  static_assert(kBlockN == 128 || kBlockN == 64);
  // kPingPong (kBlockN = 128 only): the two consumer warpgroups take turns issuing their two GEMM
  // groups per query block (S, dP | dQ of the previous block, dV, dK), so one's exp / dS work
  // runs under the other's GEMMs. That needs the dQ of block i (both warpgroups' halves of dS)
  // issued in block i + 1, after an mbarrier says both halves are in shared memory: with the dS
  // barrier inside the block the warpgroups would be back in lockstep every block. Three dS
  // buffers: a warpgroup is at most two blocks ahead, as the Q / dO stages are refilled only once
  // both released them.
  static constexpr bool kPingPong = kPingPong_;
  static_assert(!kPingPong || !kSplitD);
  static constexpr int kDSBuffers = kPingPong ? 3 : 2;
  static_assert(kBlockM == 64 || (kBlockM == 128 && !kSplitD));
  static_assert(BwdScratch::kAlignRows % kBlockM == 0);
  static_assert(kHeadDim % 32 == 0, "dq_accum's column permutation works on groups of 32 floats");

  static constexpr int kNumConsumerWG = 2;
  static constexpr int kNumThreads = 128 * (kNumConsumerWG + 1);
  // setmaxnreg only redistributes the CTA's launch allocation, 384 * 168 = 64512 registers
  // (asking for more makes the increase wait forever). kSplitD configs give the producer 40: at
  // 24 its index arithmetic spilled ~640 bytes at d = 256, reloaded between a stage's release and
  // the next TMA issue, which at one stage is serial with the consumers; their consumers fit 232.
  // kBlockN = 128 consumers (d <= 128) need all 240 (232 adds reloads to the tile loop).
  static constexpr int kProducerRegs = kSplitD ? 40 : 24;
  static constexpr int kConsumerRegs = kSplitD ? 232 : 240;
  static_assert(128 * (kNumConsumerWG * kConsumerRegs + kProducerRegs) <=
                    (65536 / kNumThreads) / 8 * 8 * kNumThreads,
                "setmaxnreg split exceeds the launch register allocation (would hang)");

  // dQ = dS K is split over the two warpgroups along M (query rows) when there are 128 of them,
  // else along N (the head dimension), like dK / dV when kSplitD: then each half of K^T, Q^T
  // (and of dO^T when kSplitD) must start on a swizzle atom. The widest 16-bit swizzle atom (64,
  // 32 or 16 columns) that divides the split columns decides the smem layout: one atom for the
  // kHeadDim-wide Q and K, one for the kHeadDimV-wide dO and V.
  static constexpr bool kdQSplitM = kBlockM == 128;
  // kdQPerWG: each warpgroup's half of dQ_partial is one contiguous half of the staging buffer
  // and of the dq_accum block, with its own full / empty mbarriers with the dQ warp and its own
  // bulk reduce-add, so that the dQ handshake does not line the ping-pong's warpgroups up (d = 64:
  // +3-8 %, H200). kdQSplitM: the halves are the block's two row halves (row-major, the permuted
  // columns of dq_accum_col). Split along the head dimension (d = 128), each warpgroup's
  // 64 x kHeadDim / 2 half is kept in its accumulator-fragment order (kdQWGCols > 0, BwdScratch::
  // dq_frag_index): 16-byte stores from one base address, where row-major column halves needed a
  // shared-memory address per 8-byte store held across the loop (more spills: -3..-7 %). d 128:
  // causal 1k / 4k +10-16 %, 1k +3 %, 16k 0, non-causal 4k -5 % (PERF_NOTES). Without ping-pong
  // (d 96, 192, 256) one buffer in the row-major layout, reduced once both halves are staged
  // (the fragment order measured -4..-13 % at d 256).
  static constexpr int kdQWGCols = BwdScratch::dq_wg_cols_for(kHeadDim, kBlockM, kPingPong);
  static constexpr bool kdQPerWG = kdQSplitM || kdQWGCols > 0;
  static_assert(kdQWGCols == 0 || (!kdQSplitM && kdQWGCols == kHeadDim / 2));
  static constexpr int kSplitCols = kdQSplitM ? kHeadDim : kHeadDim / 2;
  static constexpr int kSplitColsV = kSplitD ? kHeadDimV / 2 : kHeadDimV;
  template <int kCols>
  using SmemAtomFor = conditional_t<
      kCols % 64 == 0, GMMA::Layout_K_SW128_Atom<Element>,
      conditional_t<kCols % 32 == 0, GMMA::Layout_K_SW64_Atom<Element>,
                    GMMA::Layout_K_SW32_Atom<Element>>>;
  static_assert(kSplitCols % 16 == 0 && kSplitColsV % 16 == 0);
  using SmemAtom = SmemAtomFor<kSplitCols>;
  using SmemAtomV = SmemAtomFor<kSplitColsV>;

  using TileShapeSdP = Shape<Int<kBlockN>, Int<kBlockM>, Int<kHeadDim>>;  // S^T = K Q^T, dP^T = V dO^T
  using TileShapedK = Shape<Int<kBlockN>, Int<kHeadDim>, Int<kBlockM>>;   // dK += dS^T Q
  using TileShapedV = Shape<Int<kBlockN>, Int<kHeadDimV>, Int<kBlockM>>;  // dV += P^T dO
  using TileShapedQ = Shape<Int<kBlockM>, Int<kHeadDim>, Int<kBlockN>>;   // dQ = dS K
  using AtomSplitM = Layout<Shape<_2, _1, _1>>;
  using AtomSplitN = Layout<Shape<_1, _2, _1>>;
  using AtomLayoutSdP = conditional_t<kSplitD, AtomSplitN, AtomSplitM>;
  using AtomLayoutdKV = conditional_t<kSplitD, AtomSplitN, AtomSplitM>;
  using AtomLayoutdQ = conditional_t<kdQSplitM, AtomSplitM, AtomSplitN>;
  // (M, N, K) of one warpgroup's share.
  using TileShapeSdPAtom = Shape<Int<64>, Int<kSplitD ? kBlockM / 2 : kBlockM>, Int<kHeadDim>>;
  using TileShapedKAtom = Shape<Int<64>, Int<kSplitD ? kHeadDim / 2 : kHeadDim>, Int<kBlockM>>;
  using TileShapedVAtom = Shape<Int<64>, Int<kSplitColsV>, Int<kBlockM>>;
  using TileShapedQAtom = Shape<Int<64>, Int<kdQSplitM ? kHeadDim : kHeadDim / 2>, Int<kBlockN>>;

  using TiledMmaSdP = decltype(make_tiled_mma(
      GMMA::ss_op_selector<Element, Element, float, TileShapeSdPAtom>(), AtomLayoutSdP{}));
  // P^T / dS^T as the A operand of dV / dK: from registers (kBlockN = 128) or shared memory
  // (K-major, kSplitD).
  template <class TileAtom>
  using MmadKVOp = conditional_t<
      kSplitD,
      decltype(GMMA::ss_op_selector<Element, Element, float, TileAtom, GMMA::Major::K,
                                    GMMA::Major::MN>()),
      decltype(GMMA::rs_op_selector<Element, Element, float, TileAtom, GMMA::Major::K,
                                    GMMA::Major::MN>())>;
  using TiledMmadK = decltype(make_tiled_mma(MmadKVOp<TileShapedKAtom>{}, AtomLayoutdKV{}));
  using TiledMmadV = decltype(make_tiled_mma(MmadKVOp<TileShapedVAtom>{}, AtomLayoutdKV{}));
  using TiledMmadQ = decltype(make_tiled_mma(
      GMMA::ss_op_selector<Element, Element, float, TileShapedQAtom, GMMA::Major::MN,
                           GMMA::Major::MN>(),
      AtomLayoutdQ{}));

  using SmemLayoutQ =
      decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockM>, Int<kHeadDim>, Int<kStages>>{}));
  using SmemLayoutdO =
      decltype(tile_to_shape(SmemAtomV{}, Shape<Int<kBlockM>, Int<kHeadDimV>, Int<kStages>>{}));
  using SmemLayoutK = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockN>, Int<kHeadDim>>{}));
  using SmemLayoutV = decltype(tile_to_shape(SmemAtomV{}, Shape<Int<kBlockN>, Int<kHeadDimV>>{}));
  // Transposed views (same bytes) for the MN-major B operands: Q^T, dO^T of dK / dV, K^T of dQ.
  using SmemLayoutQt = decltype(composition(
      SmemLayoutQ{}, make_ordered_layout(Shape<Int<kHeadDim>, Int<kBlockM>, Int<kStages>>{},
                                         Step<_2, _1, _3>{})));
  using SmemLayoutdOt = decltype(composition(
      SmemLayoutdO{}, make_ordered_layout(Shape<Int<kHeadDimV>, Int<kBlockM>, Int<kStages>>{},
                                          Step<_2, _1, _3>{})));
  using SmemLayoutKt = decltype(composition(
      SmemLayoutK{}, make_ordered_layout(Shape<Int<kHeadDim>, Int<kBlockN>>{}, Step<_2, _1>{})));
  // dS as the MN-major A operand (queries x keys) of dQ, double-buffered so one warpgroup can write
  // the next block's dS while the other still reads this one; written through its transpose,
  // which is also the K-major A operand (keys x queries) of dK when kSplitD. P (kSplitD only, for
  // dV) has the same layout.
  using SmemLayoutdS = decltype(tile_to_shape(GMMA::Layout_MN_SW128_Atom<Element>{},
                                              Shape<Int<kBlockM>, Int<kBlockN>,
                                                    Int<kDSBuffers>>{}));
  using SmemLayoutdSt = decltype(composition(
      SmemLayoutdS{},
      make_ordered_layout(Shape<Int<kBlockN>, Int<kBlockM>, Int<kDSBuffers>>{},
                          Step<_2, _1, _3>{})));

  using GShape = Shape<int32_t, int32_t, int32_t, int32_t>;
  using GStride = Stride<int64_t, _1, int64_t, int64_t>;
  using GLayout = Layout<GShape, GStride>;
  template <class SmemLayout, int kRows, int kCols>
  using TmaLoad = decltype(make_tma_copy(
      SM90_TMA_LOAD{}, make_tensor(make_gmem_ptr(static_cast<Element const*>(nullptr)), GLayout{}),
      SmemLayout{}, Shape<Int<kRows>, Int<kCols>>{}, _1{}));
  using TmaQ = TmaLoad<decltype(take<0, 2>(SmemLayoutQ{})), kBlockM, kHeadDim>;
  using TmadO = TmaLoad<decltype(take<0, 2>(SmemLayoutdO{})), kBlockM, kHeadDimV>;
  using TmaK = TmaLoad<SmemLayoutK, kBlockN, kHeadDim>;
  using TmaV = TmaLoad<SmemLayoutV, kBlockN, kHeadDimV>;
  // dK / dV leave their shared-memory staging (sK / sV) by TMA stores (batched K / V; varlen /
  // seqused keys keep the row-predicated 16-byte stores): one thread issues them and the other
  // 255 return, where 256 threads' 16-byte stores held every CTA until they drained. H100, main
  // kernel: d 128 s 1k +2 %, causal 1k +4 %, 4k and 16k 0; d 256 0; d 64 (kBlockM = 128) -5..-7 %
  // from the spills the store code adds to its consumers, so it keeps the 16-byte stores.
  static constexpr bool kTmaStoreDKV = kBlockM == 64;
  // K first, then the first Q block, then V and the first dO block, with K and V on their own
  // barriers: a CTA's first loads share its memory bandwidth, and the first S^T GEMM needs only
  // K and Q. H100, main kernel, two A/Bs: d 128 +1.4..+2 % at s 1k, +2..+5.6 % at 4k, +3 % at
  // 16k (causal and not). d 64 (kBlockM = 128) lost 2-6 % and d 256 1-2 % (the producer's and
  // the first block's extra code), so only the d 128 ping-pong config takes it; the others load
  // K and V first, on one barrier.
  static constexpr bool kKThenQ = kPingPong && kBlockM == 64;
  template <class SmemLayout, int kCols>
  using TmaStore = decltype(make_tma_copy(
      SM90_TMA_STORE{}, make_tensor(make_gmem_ptr(static_cast<Element*>(nullptr)), GLayout{}),
      SmemLayout{}, Shape<Int<kBlockN>, Int<kCols>>{}, _1{}));
  using TmadK = TmaStore<SmemLayoutK, kHeadDim>;
  using TmadV = TmaStore<SmemLayoutV, kHeadDimV>;

  using Pipeline = cutlass::PipelineTmaAsync<kStages>;
  using PipelineState = typename Pipeline::PipelineState;

  // A Q (or dO) block plus its lse (or D) slice.
  static constexpr uint32_t kStageBytesQ = kBlockM * kHeadDim * sizeof(Element) + kBlockM * 4;
  static constexpr uint32_t kStageBytesdO = kBlockM * kHeadDimV * sizeof(Element) + kBlockM * 4;

  struct SharedStorage {
    alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutK>> k;
    alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutV>> v;
    alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutQ>> q;
    alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutdO>> dout;
    alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutdS>> ds;
    alignas(1024) cute::array_aligned<Element, kSplitD ? cosize_v<SmemLayoutdS> : 8> p;
    alignas(128) float dq[kBlockM * kHeadDim];  // dQ_partial in dq_accum's layout (dq_accum_col)
    alignas(16) float lse_log2[kStages][kBlockM];
    alignas(16) float dpsum[kStages][kBlockM];
    // K landed (and V, unless kKThenQ); V landed (kKThenQ).
    alignas(16) cutlass::arch::ClusterTransactionBarrier barrier_k;
    cutlass::arch::ClusterTransactionBarrier barrier_v;
    // kPingPong: both warpgroups' halves of a dS buffer are written.
    cutlass::arch::ClusterBarrier ds_full[kDSBuffers];
    // kdQPerWG: warpgroup w's half of dq staged (128 arrivals) / taken by the dQ warp (1 arrival);
    // otherwise dq_empty[0]: the whole buffer taken.
    cutlass::arch::ClusterBarrier dq_full[2], dq_empty[2];
    typename Pipeline::SharedStorage pipe_q;
    typename Pipeline::SharedStorage pipe_do;
  };
  static constexpr int kSmemBytes = int(sizeof(SharedStorage));
  static_assert(kSmemBytes <= 227 * 1024, "shared memory of this tile config exceeds sm90's 227 KiB");
};

template <class Traits>
struct BwdKernelParams {
  typename Traits::TmaQ tma_q;
  typename Traits::TmadO tma_do;
  typename Traits::TmaK tma_k;
  typename Traits::TmaV tma_v;
  typename Traits::TmadK tma_dk;
  typename Traits::TmadV tma_dv;
  // q / dO: (rows, d, heads, batch) or (total_q, d, heads, 1) when q is varlen;
  // k / v:  (rows, d, heads_kv, batch) or (total_k, d, heads_kv, 1) when k is varlen.
  typename Traits::GLayout layout_q, layout_do, layout_k, layout_v;
  typename Traits::GLayout layout_dk, layout_dv;  // like layout_k / layout_v
  AttnBwdParams attn;
  BwdScratch scratch;
  float scale_log2;    // softmax_scale * log2(e) (no softcap)
  bool zero_q_tail;    // Q / dO rows past q_len(b) may hold anything (varlen, seqused_q)
  bool zero_kv_tail;   // K / V rows past k_len(b) may hold anything (varlen, seqused_k); then
                       // dK / dV rows past k_len(b) must not be written either (no TMA store)
};

namespace detail {

// Named barriers of the two consumer warpgroups (ids above CUTLASS's reserved ones).
// kBarDQFull (!kdQPerWG) is shared with the dQ warp (consumers + 32 threads).
enum BwdBarrier : uint32_t {
  kBarDS = 1, kBarEpilogue = 2, kBarTail = 3, kBarDQFull = 4,
  kBarTurn = 6  // and 7: kPingPong, the turn of consumer warpgroup 0 / 1
};

CUTE_DEVICE int ld_acquire(const int32_t* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.s32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
// Waits for the grids this one is a programmatic dependent launch of to complete, their writes
// visible (returns at once after an ordinary launch).
CUTE_DEVICE void grid_dependency_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
CUTE_DEVICE void red_release_add(int32_t* p, int v) {
  asm volatile("red.release.gpu.global.add.s32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
// Orders this thread's generic-proxy global accesses with its async-proxy (bulk copy) ones.
CUTE_DEVICE void fence_proxy_async_global() {
  asm volatile("fence.proxy.async.global;" ::: "memory");
}
// gmem[i] = smem[i] for `bytes` / 4 floats (the bulk-copy engine).
CUTE_DEVICE void bulk_store_f32(float* gmem, const float* smem, int bytes) {
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;"
               ::"l"(gmem), "r"(cast_smem_ptr_to_uint(smem)), "r"(bytes) : "memory");
}
// gmem[i] += smem[i] for `bytes` / 4 floats, performed at L2 by the bulk-copy engine.
CUTE_DEVICE void bulk_reduce_add_f32(float* gmem, const float* smem, int bytes) {
  asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;"
               ::"l"(gmem), "r"(cast_smem_ptr_to_uint(smem)), "r"(bytes) : "memory");
}

// Clears rows [row_from, rows) of a (rows, d) smem tile, 16 bytes at a time (the swizzle keeps
// 16-byte chunks whole), by `nthreads` threads starting at `tid`.
template <int kRows, int kHeadDim, class TS>
CUTE_DEVICE void clear_rows_from(TS& s, int row_from, int tid, int nthreads) {
  constexpr int kChunks = kHeadDim / 8;
  for (int i = tid; i < (kRows - row_from) * kChunks; i += nthreads) {
    const int r = row_from + i / kChunks, c = (i % kChunks) * 8;
    *reinterpret_cast<uint4*>(&s(r, c)) = make_uint4(0, 0, 0, 0);
  }
}

}  // namespace detail

template <class Traits>
__global__ void __launch_bounds__(Traits::kNumThreads, 1)
    bwd_kernel(CUTE_GRID_CONSTANT BwdKernelParams<Traits> const p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using Element = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM;
  constexpr int kBlockN = Traits::kBlockN;
  constexpr int kHeadDim = Traits::kHeadDim;
  constexpr int kHeadDimV = Traits::kHeadDimV;
  using Pipeline = typename Traits::Pipeline;
  using PipelineState = typename Traits::PipelineState;
  using SharedStorage = typename Traits::SharedStorage;
  using namespace detail;

  extern __shared__ __align__(1024) char smem_raw[];
  SharedStorage& ss = *reinterpret_cast<SharedStorage*>(smem_raw);

  const int wg = threadIdx.x / 128;
  // blockIdx.x = key block * head_splits + split: in increasing key order (for causal masks the
  // heaviest first), the splits of a key block next to each other so that they start together.
  const int splits = p.scratch.head_splits;  // MHA (1): no divisions (d 128, s 1k: 2% faster)
  const int n_block = splits == 1 ? int(blockIdx.x) : int(blockIdx.x) / splits;
  // blockIdx.y = kv head. The slice of the GQA group's query heads this CTA sums dK / dV over is
  // [slice * heads_per_split, (slice + 1) * heads_per_split) (the whole group when head_splits
  // = 1); the loops compute these bounds in place: bounds hoisted into variables here made ptxas
  // spill in the dQ warp (d = 256 main kernel 25% slower, H100).
  const int slice =
      splits == 1 ? int(blockIdx.y) : int(blockIdx.y) * splits + int(blockIdx.x) % splits;
  const int batch = blockIdx.z;
  const AttnBwdParams& attn = p.attn;
  const BwdScratch& scratch = p.scratch;

  const int q_len = attn.q_len(batch);
  const int k_len = attn.k_len(batch);
  const int n0 = n_block * kBlockN;
  const MaskSpec mask = make_mask(q_len, k_len, attn.causal, attn.window_left, attn.window_right);
  // The query rows that see at least one of this block's keys. None (no key below k_len, or the
  // mask hides the block): the whole CTA returns, before any barrier; dK = dV = 0 there (the op
  // zero-fills such rows; with head splits bwd_reduce_dkv writes the zeros: a zero store here
  // cost the d 64 kernel 2% at s 1k, H100, though never executed).
  int row_lo, row_hi;
  if (!key_block_rows(mask, q_len, k_len, n0, kBlockN, Traits::kIsLocal, &row_lo, &row_hi)) {
    grid_dependency_wait();  // see launch_dependents below: exited CTAs count as triggered
    return;
  }
  const int m_lo = row_lo / kBlockM;
  const int m_hi = (row_hi + kBlockM - 1) / kBlockM;
  const int slice_heads = scratch.heads_per_split;
  // Default (non-deterministic) mode: key block n starts its sweep at the (n mod count)-th query
  // block, so the CTAs of one head do not all reduce-add into the same dQ rows at the same time.
  // Deterministic mode keeps increasing order (the semaphore chain assumes it).
  const int num_m = m_hi - m_lo;
  const int m_shift = attn.deterministic ? 0 : n_block % num_m;
  auto query_block = [&](int i) {
    const int j = i + m_shift;
    return m_lo + (j >= num_m ? j - num_m : j);
  };

  if (threadIdx.x == 0) {
    prefetch_tma_descriptor(p.tma_q.get_tma_descriptor());
    prefetch_tma_descriptor(p.tma_do.get_tma_descriptor());
    prefetch_tma_descriptor(p.tma_k.get_tma_descriptor());
    prefetch_tma_descriptor(p.tma_v.get_tma_descriptor());
    if (Traits::kTmaStoreDKV && !p.zero_kv_tail) {  // built by the launch only then
      prefetch_tma_descriptor(p.tma_dk.get_tma_descriptor());
      prefetch_tma_descriptor(p.tma_dv.get_tma_descriptor());
    }
    ss.barrier_k.init(1);
    ss.barrier_v.init(1);
    if constexpr (Traits::kPingPong) {
      for (int b = 0; b < Traits::kDSBuffers; ++b) ss.ds_full[b].init(128 * Traits::kNumConsumerWG);
    }
    for (int w = 0; w < 2; ++w) {
      ss.dq_full[w].init(128);
      ss.dq_empty[w].init(1);
    }
  }
  typename Pipeline::Params pp;
  pp.transaction_bytes = Traits::kStageBytesQ;
  pp.role = wg == 0 ? Pipeline::ThreadCategory::Producer : Pipeline::ThreadCategory::Consumer;
  pp.is_leader = threadIdx.x == 0;
  pp.num_consumers = 128 * Traits::kNumConsumerWG;
  Pipeline pipe_q(ss.pipe_q, pp, Shape<_1, _1, _1>{});
  pp.transaction_bytes = Traits::kStageBytesdO;
  Pipeline pipe_do(ss.pipe_do, pp, Shape<_1, _1, _1>{});
  const bool q_varlen = attn.q_varlen();
  const bool k_varlen = attn.cu_seqlens_k != nullptr;
  Tensor sK = make_tensor(make_smem_ptr(ss.k.data()), typename Traits::SmemLayoutK{});
  Tensor sV = make_tensor(make_smem_ptr(ss.v.data()), typename Traits::SmemLayoutV{});
  const int k_row0 = k_varlen ? attn.cu_seqlens_k[batch] : 0;
  const int head_kv = splits == 1 ? slice : slice / splits;
  auto load_k = [&] {
    Tensor mK = p.tma_k.get_tma_tensor(p.layout_k.shape())(_, _, head_kv, k_varlen ? 0 : batch);
    Tensor gK = local_tile(domain_offset(make_coord(k_row0, _0{}), mK),
                           Shape<Int<kBlockN>, Int<kHeadDim>>{}, make_coord(n_block, _0{}));
    auto [tKg, tKs] = tma_partition(p.tma_k, _0{}, Layout<_1>{}, group_modes<0, 2>(sK),
                                    group_modes<0, 2>(gK));
    // One arrival per barrier phase: without kKThenQ it expects V's bytes too.
    constexpr int kCols = kHeadDim + (Traits::kKThenQ ? 0 : kHeadDimV);
    ss.barrier_k.arrive_and_expect_tx(kBlockN * kCols * sizeof(Element));
    copy(p.tma_k.with(reinterpret_cast<uint64_t&>(ss.barrier_k), 0), tKg, tKs);
  };
  // On barrier_v (kKThenQ) or on barrier_k, whose arrival load_k made.
  auto load_v = [&] {
    Tensor mV = p.tma_v.get_tma_tensor(p.layout_v.shape())(_, _, head_kv, k_varlen ? 0 : batch);
    Tensor gV = local_tile(domain_offset(make_coord(k_row0, _0{}), mV),
                           Shape<Int<kBlockN>, Int<kHeadDimV>>{}, make_coord(n_block, _0{}));
    auto [tVg, tVs] = tma_partition(p.tma_v, _0{}, Layout<_1>{}, group_modes<0, 2>(sV),
                                    group_modes<0, 2>(gV));
    auto& barrier = Traits::kKThenQ ? ss.barrier_v : ss.barrier_k;
    if constexpr (Traits::kKThenQ)
      barrier.arrive_and_expect_tx(kBlockN * kHeadDimV * sizeof(Element));
    copy(p.tma_v.with(reinterpret_cast<uint64_t&>(barrier), 0), tVg, tVs);
  };
  // K (and V) are inputs, not the preprocess's outputs: their loads are in flight while the
  // preprocess ends.
  if (threadIdx.x == 0) {
    cutlass::arch::fence_barrier_init();
    load_k();
    if constexpr (!Traits::kKThenQ) load_v();
  }
  __syncthreads();
  // The main kernel is a programmatic dependent launch after the preprocess (bwd_api.cu): lse /
  // D, the semaphore and claim slots and dq_done are read from here on. Every thread waits
  // before this CTA triggers the dQ convert (a programmatic dependent launch of this kernel):
  // the first trigger of a CTA counts, and the convert reads dq_done, which must have been zeroed
  // by then. The convert waits for its heads' dq_done counts itself.
  grid_dependency_wait();
  asm volatile("griddepcontrol.launch_dependents;");

  Tensor sQ = make_tensor(make_smem_ptr(ss.q.data()), typename Traits::SmemLayoutQ{});
  Tensor sdO = make_tensor(make_smem_ptr(ss.dout.data()), typename Traits::SmemLayoutdO{});
  Tensor sQt = make_tensor(make_smem_ptr(ss.q.data()), typename Traits::SmemLayoutQt{});
  Tensor sdOt = make_tensor(make_smem_ptr(ss.dout.data()), typename Traits::SmemLayoutdOt{});
  Tensor sKt = make_tensor(make_smem_ptr(ss.k.data()), typename Traits::SmemLayoutKt{});
  Tensor sdS = make_tensor(make_smem_ptr(ss.ds.data()), typename Traits::SmemLayoutdS{});
  Tensor sdSt = make_tensor(make_smem_ptr(ss.ds.data()), typename Traits::SmemLayoutdSt{});

  if (wg == 0) {
    // ------------------------------------------------------------------ producer
    cutlass::arch::warpgroup_reg_dealloc<Traits::kProducerRegs>();
    if (threadIdx.x == 0) {
      const int q_row0 = q_varlen ? attn.cu_seqlens_q[batch] : 0;
      PipelineState wr = cutlass::make_producer_start_state<Pipeline>();
      for (int h = slice * slice_heads; h < (slice + 1) * slice_heads; ++h) {
        Tensor mQ = p.tma_q.get_tma_tensor(p.layout_q.shape())(_, _, h, q_varlen ? 0 : batch);
        Tensor mdO = p.tma_do.get_tma_tensor(p.layout_do.shape())(_, _, h, q_varlen ? 0 : batch);
        for (int i = 0; i < num_m; ++i) {
          const int m = query_block(i);
          Tensor gQ = local_tile(domain_offset(make_coord(q_row0, _0{}), mQ),
                                 Shape<Int<kBlockM>, Int<kHeadDim>>{}, make_coord(m, _0{}));
          Tensor gdO = local_tile(domain_offset(make_coord(q_row0, _0{}), mdO),
                                  Shape<Int<kBlockM>, Int<kHeadDimV>>{}, make_coord(m, _0{}));
          auto [tQg, tQs] = tma_partition(p.tma_q, _0{}, Layout<_1>{}, group_modes<0, 2>(sQ),
                                          group_modes<0, 2>(gQ));
          auto [tdOg, tdOs] = tma_partition(p.tma_do, _0{}, Layout<_1>{}, group_modes<0, 2>(sdO),
                                            group_modes<0, 2>(gdO));
          const int64_t srow = scratch.row_index(attn, batch, h, m * kBlockM);
          pipe_q.producer_acquire(wr);
          uint64_t* bar_q = pipe_q.producer_get_barrier(wr);
          copy(p.tma_q.with(*bar_q, 0), tQg, tQs(_, wr.index()));
          SM90_BULK_COPY_G2S::copy(scratch.lse_log2 + srow, bar_q, ss.lse_log2[wr.index()],
                                   kBlockM * 4);
          if constexpr (Traits::kKThenQ) {
            if (h == slice * slice_heads && i == 0) load_v();
          }
          pipe_do.producer_acquire(wr);
          uint64_t* bar_do = pipe_do.producer_get_barrier(wr);
          copy(p.tma_do.with(*bar_do, 0), tdOg, tdOs(_, wr.index()));
          SM90_BULK_COPY_G2S::copy(scratch.dpsum + srow, bar_do, ss.dpsum[wr.index()],
                                   kBlockM * 4);
          ++wr;
        }
      }
    } else if (threadIdx.x / 32 == 1) {
      // dQ warp: the bulk reduce-adds of each staged dQ_partial, in the consumers' (head, block)
      // order.
      constexpr int kThreads = 128 * Traits::kNumConsumerWG + 32;
      const int total = slice_heads * (m_hi - m_lo);
      int iter = 0;
      // dq_accum is not zeroed: in each query block one key block stores its partial and the
      // others add to it once that store is complete. Deterministic mode: the first of the chain
      // stores. Otherwise the first to claim the block (an atomic count per block, issued while
      // the previous block's reads complete) stores and then sets the block's semaphore slot,
      // which the others wait for. The claimer stores without waiting for anything but its own
      // consumers, so no CTA waits on one that has not started (no order of CTAs is assumed).
      const bool claiming = !attn.deterministic && !scratch.dq_zeroed;
      auto slot = [&](int32_t* base, int hh, int mm) {
        return base + (int64_t(batch) * attn.heads_q + hh) * scratch.m_blocks + mm;
      };
      int claim = 0;  // the current block's claim count before this CTA's: 0 = it stores
      if (threadIdx.x == 32 && claiming)
        claim = atomicAdd(slot(scratch.dq_claim, slice * slice_heads, query_block(0)), 1);
      for (int h = slice * slice_heads; h < (slice + 1) * slice_heads; ++h) {
        for (int i = 0; i < num_m; ++i, ++iter) {
          const int m = query_block(i);
          int32_t* sem = slot(scratch.semaphore, h, m);
          if (threadIdx.x == 32 && claiming && claim != 0) {
            while (ld_acquire(sem) == 0) __nanosleep(32);
            fence_proxy_async_global();
          }
          if constexpr (!Traits::kdQPerWG) cutlass::arch::NamedBarrier::sync(kThreads, kBarDQFull);
          if (threadIdx.x == 32) {
            float* dq_acc = scratch.dq_accum +
                            scratch.row_index(attn, batch, h, m * kBlockM) * kHeadDim;
            if constexpr (Traits::kdQPerWG) ss.dq_full[0].wait(iter & 1);
            bool store = claiming && claim == 0;
            if (attn.deterministic) {
              int col_lo = 0, col_hi = k_len;
              if constexpr (Traits::kIsLocal)
                mask.key_range(m * kBlockM, min(m * kBlockM + kBlockM, q_len), &col_lo, &col_hi);
              const int before = n_block - col_lo / kBlockN;  // key blocks that add first
              while (ld_acquire(sem) != before) __nanosleep(32);
              fence_proxy_async_global();
              store = before == 0 && !scratch.dq_zeroed;
            }
            auto put = [&](float* dst, const float* src, int bytes) {
              if (store) bulk_store_f32(dst, src, bytes);
              else bulk_reduce_add_f32(dst, src, bytes);
            };
            // The next block's claim, in flight while this block's reads complete.
            auto claim_next = [&] {
              if (!claiming) return;
              if (i + 1 < num_m) claim = atomicAdd(slot(scratch.dq_claim, h, query_block(i + 1)), 1);
              else if (h + 1 < (slice + 1) * slice_heads)
                claim = atomicAdd(slot(scratch.dq_claim, h + 1, query_block(0)), 1);
            };
            if constexpr (Traits::kdQPerWG) {
              // Each half as soon as its warpgroup staged it; each returned once read.
              constexpr int kHalf = kBlockM * kHeadDim / 2;
              put(dq_acc, ss.dq, kHalf * 4);
              tma_store_arrive();
              ss.dq_full[1].wait(iter & 1);
              put(dq_acc + kHalf, ss.dq + kHalf, kHalf * 4);
              tma_store_arrive();
              claim_next();
              tma_store_wait<1>();
              if (iter + 1 < total) ss.dq_empty[0].arrive();
              tma_store_wait<0>();
              if (iter + 1 < total) ss.dq_empty[1].arrive();
            } else {
              put(dq_acc, ss.dq, kBlockM * kHeadDim * 4);
              tma_store_arrive();
              claim_next();
              tma_store_wait<0>();  // smem read: the consumers may refill it
              if (iter + 1 < total) ss.dq_empty[0].arrive();
            }
            if (attn.deterministic || store) {
              asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");  // written, not just read
              fence_proxy_async_global();
              __threadfence();
              red_release_add(sem, 1);
            }
          }
        }
        // This CTA's additions into head h's rows are complete: the dQ convert of the head waits
        // for every key block's count (bwd_api.cu), not for the end of the kernel.
        if (threadIdx.x == 32) {
          asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");  // added, not just read
          fence_proxy_async_global();
          __threadfence();
          red_release_add(scratch.dq_done + int64_t(batch) * attn.heads_q + h, 1);
        }
      }
    }
    return;
  }

  // -------------------------------------------------------------------- consumers
  cutlass::arch::warpgroup_reg_alloc<Traits::kConsumerRegs>();
  const int ctid = threadIdx.x - 128;  // 0..255
  constexpr int kConsumerThreads = 128 * Traits::kNumConsumerWG;
  typename Traits::TiledMmaSdP mma_sdp;
  typename Traits::TiledMmadK mma_dk;
  typename Traits::TiledMmadV mma_dv;
  typename Traits::TiledMmadQ mma_dq;
  auto thr_sdp = mma_sdp.get_thread_slice(ctid);
  auto thr_dk = mma_dk.get_thread_slice(ctid);
  auto thr_dv = mma_dv.get_thread_slice(ctid);
  auto thr_dq = mma_dq.get_thread_slice(ctid);

  Tensor tSrK = thr_sdp.partition_fragment_A(sK);      // descriptors
  Tensor tSrQ = thr_sdp.partition_fragment_B(sQ);      // (MMA, N, K, stage)
  Tensor tdPrV = thr_sdp.partition_fragment_A(sV);
  Tensor tdPrdO = thr_sdp.partition_fragment_B(sdO);
  Tensor tdVrdO = thr_dv.partition_fragment_B(sdOt);   // (MMA, N, K, stage)
  Tensor tdKrQ = thr_dk.partition_fragment_B(sQt);
  Tensor tdQrdS = thr_dq.partition_fragment_A(sdS);    // (MMA, M, K, buffer)
  Tensor tdQrK = thr_dq.partition_fragment_B(sKt);
  // dS^T (and P^T when kSplitD) go to smem with stmatrix: 8x8 blocks whose rows (8 consecutive
  // queries) are contiguous 16 bytes in the MN-major layout; one instruction per four blocks and
  // 32-bit shared addresses instead of per-element generic stores.
  auto smem_copy_ds = make_tiled_copy_C(Copy_Atom<SM90_U32x4_STSM_N, Element>{}, mma_sdp);
  auto thr_copy_ds = smem_copy_ds.get_thread_slice(ctid);
  Tensor tdSsdS = thr_copy_ds.partition_D(sdSt);       // (CPY, CPY_M, CPY_N, buffer)
  Tensor sPt = make_tensor(make_smem_ptr(ss.p.data()), typename Traits::SmemLayoutdSt{});
  Tensor tPsP = thr_copy_ds.partition_D(sPt);          // kSplitD
  // kSplitD: P^T and dS^T as the K-major smem A operands of dV and dK (descriptors).
  auto tdVrP = [&] {
    if constexpr (Traits::kSplitD) return thr_dv.partition_fragment_A(sPt);
    else return 0;
  }();
  auto tdKrdS = [&] {
    if constexpr (Traits::kSplitD) return thr_dk.partition_fragment_A(sdSt);
    else return 0;
  }();

  Tensor tdVrdV = partition_fragment_C(mma_dv, select<0, 1>(typename Traits::TileShapedV{}));
  Tensor tdKrdK = partition_fragment_C(mma_dk, select<0, 1>(typename Traits::TileShapedK{}));
  clear(tdVrdV);
  clear(tdKrdK);

  // (key, query) coordinates of the S^T accumulator, (query, dim) of the dQ accumulator.
  Tensor cS = make_identity_tensor(select<0, 1>(typename Traits::TileShapeSdP{}));
  Tensor tScS = thr_sdp.partition_C(cS);
  Tensor tScS_rc = make_tensor(tScS.data(), acc_rowcol(tScS.layout()));
  Tensor cdQ = make_identity_tensor(select<0, 1>(typename Traits::TileShapedQ{}));
  Tensor tdQcdQ = thr_dq.partition_C(cdQ);

  ss.barrier_k.wait(0);
  if (p.zero_kv_tail && n0 + kBlockN > k_len) {
    if constexpr (Traits::kKThenQ) ss.barrier_v.wait(0);
    // K / V rows past k_len: P and dS are 0 there, but 0 * NaN is NaN inside the MMAs.
    clear_rows_from<kBlockN, kHeadDim>(sK, k_len - n0, ctid, kConsumerThreads);
    clear_rows_from<kBlockN, kHeadDimV>(sV, k_len - n0, ctid, kConsumerThreads);
    cutlass::arch::fence_view_async_shared();
    cutlass::arch::NamedBarrier::sync(kConsumerThreads, kBarTail);
  }

  const float scale_log2 = Traits::kHasSoftcap ? kLog2e : p.scale_log2;
  // A (query block, key block) tile needs element masking when it straddles q_len, k_len or a
  // window edge.
  auto tile_needs_mask = [&](int m0) {
    bool need = m0 + kBlockM > q_len || n0 + kBlockN > k_len;
    if constexpr (Traits::kIsLocal) {
      const int r0 = m0, r1 = m0 + kBlockM - 1;
      if (mask.window_right >= 0) need |= n0 + kBlockN - 1 > mask.diagonal(r0) + mask.window_right;
      if (mask.window_left >= 0) need |= n0 < mask.diagonal(r1) - mask.window_left;
    }
    return need;
  };

  // This warpgroup's half of dQ_partial (fp32) staged in dq_accum's layout for the dQ warp, after
  // it has taken the previous one (`staged` blocks were staged before this one). The "taken"
  // signal is an mbarrier each warpgroup waits on by itself, so the handover does not line the two
  // warpgroups up.
  auto stage_dq = [&](auto& tdQrdQ, int staged) {
    if (staged > 0) ss.dq_empty[Traits::kdQPerWG ? wg - 1 : 0].wait((staged - 1) & 1);
    if constexpr (Traits::kdQWGCols == 0) {
      CUTE_UNROLL
      for (int i = 0; i < size(tdQrdQ); i += 2) {
        const int row = get<0>(tdQcdQ(i)), col = get<1>(tdQcdQ(i));
        *reinterpret_cast<float2*>(&ss.dq[row * kHeadDim + BwdScratch::dq_accum_col(row, col)]) =
            make_float2(tdQrdQ(i), tdQrdQ(i + 1));
      }
    } else {
      // Fragment order (BwdScratch::dq_frag_index): value i of thread t at (i / 4) * 512 + 4 t.
      float* chunk = ss.dq + (wg - 1) * (kBlockM * kHeadDim / 2) + 4 * (ctid % 128);
      CUTE_UNROLL
      for (int i = 0; i < size(tdQrdQ); i += 4)
        *reinterpret_cast<float4*>(chunk + i * 128) =
            make_float4(tdQrdQ(i), tdQrdQ(i + 1), tdQrdQ(i + 2), tdQrdQ(i + 3));
    }
    cutlass::arch::fence_view_async_shared();  // visible to the bulk copy (async proxy)
    if constexpr (Traits::kdQPerWG) ss.dq_full[wg - 1].arrive();
    else cutlass::arch::NamedBarrier::arrive(kConsumerThreads + 32, kBarDQFull);
  };
  // kPingPong turns: warpgroup 0 goes first (warpgroup 1 pre-arrives once) and warpgroup 1 skips
  // its last pass, so every generation of both barriers completes.
  const int wgc = wg - 1;
  auto turn_wait = [&] {
    if constexpr (Traits::kPingPong)
      cutlass::arch::NamedBarrier::sync(kConsumerThreads, kBarTurn + wgc);
  };
  auto turn_pass = [&](bool last) {
    if constexpr (Traits::kPingPong) {
      if (!(last && wgc == 1))
        cutlass::arch::NamedBarrier::arrive(kConsumerThreads, kBarTurn + 1 - wgc);
    }
  };
  if constexpr (Traits::kPingPong) {
    if (wgc == 1) cutlass::arch::NamedBarrier::arrive(kConsumerThreads, kBarTurn);
  }
  const int total_iters = slice_heads * num_m;

  PipelineState rd;
  int iter = 0;
  for (int h = slice * slice_heads; h < (slice + 1) * slice_heads; ++h) {
    for (int i = 0; i < num_m; ++i, ++iter) {
      const int m = query_block(i);
      const int m0 = m * kBlockM;
      const int stage = rd.index();
      const int ds_buf = iter % Traits::kDSBuffers;
      pipe_q.consumer_wait(rd);
      pipe_do.consumer_wait(rd);
      if (p.zero_q_tail && m0 + kBlockM > q_len) {
        // Q / dO rows past q_len (another sequence, or unused rows that may hold NaN).
        Tensor sQs = sQ(_, _, stage);
        Tensor sdOs = sdO(_, _, stage);
        clear_rows_from<kBlockM, kHeadDim>(sQs, q_len - m0, ctid, kConsumerThreads);
        clear_rows_from<kBlockM, kHeadDimV>(sdOs, q_len - m0, ctid, kConsumerThreads);
        cutlass::arch::fence_view_async_shared();
        cutlass::arch::NamedBarrier::sync(kConsumerThreads, kBarTail);
      }
      Tensor tSrS = partition_fragment_C(mma_sdp, select<0, 1>(typename Traits::TileShapeSdP{}));
      Tensor tdPrdP = partition_fragment_C(mma_sdp, select<0, 1>(typename Traits::TileShapeSdP{}));
      turn_wait();
      wg_gemm<true, -1>(mma_sdp, tSrK, tSrQ(_, _, _, stage), tSrS);
      if constexpr (Traits::kKThenQ) {
        if (iter == 0) ss.barrier_v.wait(0);
      }
      wg_gemm<true, -1>(mma_sdp, tdPrV, tdPrdO(_, _, _, stage), tdPrdP);
      turn_pass(false);
      warpgroup_wait<1>();  // S^T done, dP^T still running
      warpgroup_fence_operand(tSrS);

      // P^T = exp2(S^T * scale - lse) (softcapped first), 0 where masked. Two loops, picked once
      // per tile: with the mask test inside one loop under a runtime flag, the compiler evaluated
      // it for every element of every tile (a predicate bitmask and a branch per element).
      Tensor s = make_tensor(tSrS.data(), acc_rowcol(tSrS.layout()));
      Tensor softcap_grad_rc = make_tensor_like(s);  // only used with softcap
      // d = 64 (kBlockM = 128) under a local mask: the masked tiles run the plain loop, then zero
      // P^T where masked with one bit mask per key over the thread's 32 query columns
      // (fragment_cols_below, R2P): causal 1k +5 % (H200, main kernel). Elsewhere that form cost
      // spills (d 128: +20 bytes, -3 % at 16k; softcap: +250 bytes), so the mask is tested per
      // element inside the loop.
      constexpr bool kMaskAfter = Traits::kIsLocal && !Traits::kHasSoftcap && kBlockM == 128;
      auto compute_p = [&](auto masked) {
        constexpr bool kMaskInLoop = decltype(masked)::value && !kMaskAfter;
        CUTE_UNROLL
        for (int c = 0; c < size<1>(s); ++c) {
          const int q = get<1>(tScS_rc(0, c));
          const float lse = ss.lse_log2[stage][q];
          // Masked: the keys query m0 + q sees, relative to this thread's first key (none past
          // q_len); each element compares its compile-time key offset against them.
          int key_lo = 0, key_hi = 0;
          if constexpr (kMaskInLoop) {
            if (m0 + q < q_len) mask.visible_cols(m0 + q, &key_lo, &key_hi);
            const int key_base = n0 + get<0>(tScS_rc(0, 0));
            key_lo -= key_base;
            key_hi -= key_base;
            if (m0 + q >= q_len) key_hi = key_lo;  // empty
          }
          CUTE_UNROLL
          for (int r = 0; r < size<0>(s); ++r) {
            float x = s(r, c);
            if constexpr (Traits::kHasSoftcap) {
              x = apply_softcap(x * attn.softmax_scale, attn.softcap);
              softcap_grad_rc(r, c) = softcap_grad(x, attn.softcap);
            }
            float prob = ex2_approx(fmaf(x, scale_log2, -lse));
            if constexpr (kMaskInLoop) {
              const int key = get<0>(tScS_rc(r, c)) - get<0>(tScS_rc(0, 0));
              if (key < key_lo || key >= key_hi) prob = 0.f;
            }
            s(r, c) = prob;
          }
        }
        if constexpr (decltype(masked)::value && kMaskAfter) {
          // Per key, the queries that see it (none past q_len, none for keys past k_len).
          constexpr int kCols = size<1>(decltype(s){});
          const int q_base = m0 + get<1>(tScS_rc(0, 0));
          CUTE_UNROLL
          for (int r = 0; r < size<0>(s); ++r) {
            const int key = n0 + get<0>(tScS_rc(r, 0));
            int q_lo, q_hi;
            mask.query_range(key, key + 1, &q_lo, &q_hi);
            const uint32_t visible = fragment_cols_below<kCols>(q_hi - q_base) &
                                     ~fragment_cols_below<kCols>(q_lo - q_base);
            CUTE_UNROLL
            for (int c = 0; c < kCols; ++c) {
              if (!((visible >> c) & 1u)) s(r, c) = 0.f;
            }
          }
        }
      };
      if (tile_needs_mask(m0)) compute_p(cute::true_type{});
      else compute_p(cute::false_type{});
      warpgroup_wait<0>();  // dP^T done
      warpgroup_fence_operand(tdPrdP);
      // dS^T = P^T o (dP^T - D) (o softcap'), unscaled: softmax_scale is applied to dQ and dK at
      // the end.
      Tensor dp = make_tensor(tdPrdP.data(), acc_rowcol(tdPrdP.layout()));
      CUTE_UNROLL
      for (int c = 0; c < size<1>(dp); ++c) {
        const float dpsum = ss.dpsum[stage][get<1>(tScS_rc(0, c))];
        CUTE_UNROLL
        for (int r = 0; r < size<0>(dp); ++r) {
          float ds = s(r, c) * (dp(r, c) - dpsum);
          if constexpr (Traits::kHasSoftcap) ds *= softcap_grad_rc(r, c);
          dp(r, c) = ds;
        }
      }
      Tensor tPrP = make_tensor_like<Element>(tSrS);
      Tensor tdSrdS = make_tensor_like<Element>(tdPrdP);
      convert_frag(tSrS, tPrP);
      convert_frag(tdPrdP, tdSrdS);
      copy(smem_copy_ds, thr_copy_ds.retile_S(tdSrdS), tdSsdS(_, _, _, ds_buf));
      auto issue_dk = [&] {
        if constexpr (Traits::kSplitD) {
          wg_gemm<false, -1>(mma_dk, tdKrdS(_, _, _, ds_buf), tdKrQ(_, _, _, stage), tdKrdK);
        } else {
          Tensor tdSrdSa = make_tensor(tdSrdS.data(), acc_as_a_operand(tdSrdS.layout()));
          wg_gemm<false, -1>(mma_dk, tdSrdSa, tdKrQ(_, _, _, stage), tdKrdK);
        }
      };
      auto issue_dv = [&] {
        if constexpr (Traits::kSplitD) {
          wg_gemm<false, -1>(mma_dv, tdVrP(_, _, _, ds_buf), tdVrdO(_, _, _, stage), tdVrdV);
        } else {
          Tensor tPrPa = make_tensor(tPrP.data(), acc_as_a_operand(tPrP.layout()));
          wg_gemm<false, -1>(mma_dv, tPrPa, tdVrdO(_, _, _, stage), tdVrdV);
        }
      };
      if constexpr (Traits::kPingPong) {
        cutlass::arch::fence_view_async_shared();  // dS visible to the dQ GEMMs (async proxy)
        ss.ds_full[ds_buf].arrive();
        // Second GEMM group: dQ of the previous block (both halves of its dS are in shared memory
        // by now, or soon: the other warpgroup wrote them before its own previous second group),
        // then dV, dK. Staging dQ overlaps dV and dK.
        auto second_group = [&](auto has_prev) {
          Tensor tdQrdQ =
              partition_fragment_C(mma_dq, select<0, 1>(typename Traits::TileShapedQ{}));
          const int prev_buf = (iter + Traits::kDSBuffers - 1) % Traits::kDSBuffers;
          if constexpr (decltype(has_prev)::value)
            ss.ds_full[prev_buf].wait(((iter - 1) / Traits::kDSBuffers) & 1);
          turn_wait();
          if constexpr (decltype(has_prev)::value)
            wg_gemm<true, -1>(mma_dq, tdQrdS(_, _, _, prev_buf), tdQrK, tdQrdQ);
          issue_dv();
          issue_dk();
          turn_pass(iter + 1 == total_iters);
          if constexpr (decltype(has_prev)::value) {
            warpgroup_wait<2>();  // dQ of the previous block done
            warpgroup_fence_operand(tdQrdQ);
            stage_dq(tdQrdQ, iter - 1);
          }
          warpgroup_wait<1>();  // dV done: dO of this stage is no longer read
          warpgroup_fence_operand(tPrP);
          pipe_do.consumer_release(rd);
          warpgroup_wait<0>();  // dK done: Q of this stage is no longer read
          warpgroup_fence_operand(tdSrdS);
          warpgroup_fence_operand(tdKrdK);
          pipe_q.consumer_release(rd);
        };
        if (iter == 0) second_group(cute::false_type{});
        else second_group(cute::true_type{});
      } else {
        if constexpr (Traits::kSplitD) {
          // dV and dK of this warpgroup's columns need P^T / dS^T of every query: exchange both
          // through shared memory.
          copy(smem_copy_ds, thr_copy_ds.retile_S(tPrP), tPsP(_, _, _, ds_buf));
          cutlass::arch::fence_view_async_shared();  // visible to the GEMMs (async proxy)
          cutlass::arch::NamedBarrier::sync(kConsumerThreads, kBarDS);  // both halves written
          issue_dv();
        } else {
          cutlass::arch::fence_view_async_shared();  // dS visible to the dQ GEMM (async proxy)
          issue_dv();
          cutlass::arch::NamedBarrier::sync(kConsumerThreads, kBarDS);  // both halves of dS written
        }
        Tensor tdQrdQ = partition_fragment_C(mma_dq, select<0, 1>(typename Traits::TileShapedQ{}));
        if constexpr (Traits::kStages > 1) {
          // GEMM order dV, dQ, dK: dQ (which needs both warpgroups' dS) finishes while dK still
          // runs, so staging dQ_partial (and waiting for the dQ warp to take the previous one)
          // overlaps the dK GEMM instead of idling the tensor cores.
          wg_gemm<true, -1>(mma_dq, tdQrdS(_, _, _, ds_buf), tdQrK, tdQrdQ);
          issue_dk();
          warpgroup_wait<2>();  // dV done: dO of this stage is no longer read
          warpgroup_fence_operand(tPrP);  // the register A operand of dV (kBlockN = 128)
          pipe_do.consumer_release(rd);
          warpgroup_wait<1>();  // dQ done, dK still running
          warpgroup_fence_operand(tdQrdQ);
          stage_dq(tdQrdQ, iter);
          warpgroup_wait<0>();  // dK done: Q of this stage is no longer read
          warpgroup_fence_operand(tdSrdS);
          warpgroup_fence_operand(tdKrdK);
          pipe_q.consumer_release(rd);
        } else {
          // One stage (d = 256): the producer's next Q / dO load waits for the release, so dV and
          // dK go first and the stage is released while dQ runs and is staged.
          issue_dk();
          wg_gemm<true, -1>(mma_dq, tdQrdS(_, _, _, ds_buf), tdQrK, tdQrdQ);
          warpgroup_wait<1>();  // dV, dK done
          warpgroup_fence_operand(tPrP);
          warpgroup_fence_operand(tdSrdS);
          warpgroup_fence_operand(tdKrdK);
          pipe_q.consumer_release(rd);
          pipe_do.consumer_release(rd);
          warpgroup_wait<0>();
          warpgroup_fence_operand(tdQrdQ);
          stage_dq(tdQrdQ, iter);
        }
      }
      warpgroup_fence_operand(tdVrdV);
      ++rd;
    }
  }
  if constexpr (Traits::kPingPong) {
    // dQ of the last block.
    const int last = iter - 1, buf = last % Traits::kDSBuffers;
    ss.ds_full[buf].wait((last / Traits::kDSBuffers) & 1);
    Tensor tdQrdQ = partition_fragment_C(mma_dq, select<0, 1>(typename Traits::TileShapedQ{}));
    wg_gemm<true, -1>(mma_dq, tdQrdS(_, _, _, buf), tdQrK, tdQrdQ);
    warpgroup_wait<0>();
    warpgroup_fence_operand(tdQrdQ);
    stage_dq(tdQrdQ, last);
  }

  // ------------------------------------------------------------------ epilogue
  if (splits > 1) {
    CUTE_UNROLL
    for (int i = 0; i < size(tdKrdK); ++i) tdKrdK(i) *= attn.softmax_scale;
    // This slice's fp32 sums straight from the accumulators (rows below k_len); bwd_reduce_dkv
    // adds the slices of a kv head.
    const int64_t r0 = scratch.partial_row(attn, batch, n0, slice);
    auto store = [&](auto const& acc, auto const& coords, float* partial, int cols) {
      CUTE_UNROLL
      for (int i = 0; i < size(acc); ++i) {
        const int r = get<0>(coords(i)), c = get<1>(coords(i));
        if (n0 + r < k_len) partial[(r0 + r) * cols + c] = acc(i);
      }
    };
    store(tdKrdK, thr_dk.partition_C(make_identity_tensor(Shape<Int<kBlockN>, Int<kHeadDim>>{})),
          scratch.dk_partial, kHeadDim);
    store(tdVrdV, thr_dv.partition_C(make_identity_tensor(Shape<Int<kBlockN>, Int<kHeadDimV>>{})),
          scratch.dv_partial, kHeadDimV);
    return;
  }
  // Every GEMM of both warpgroups has read K / V: stage dK (times softmax_scale) and dV there.
  cutlass::arch::NamedBarrier::sync(kConsumerThreads, kBarEpilogue);
  CUTE_UNROLL
  for (int i = 0; i < size(tdKrdK); ++i) tdKrdK(i) *= attn.softmax_scale;
  {
    Tensor tdKrdKe = make_tensor_like<Element>(tdKrdK);
    Tensor tdVrdVe = make_tensor_like<Element>(tdVrdV);
    convert_frag(tdKrdK, tdKrdKe);
    convert_frag(tdVrdV, tdVrdVe);
    copy(tdKrdKe, thr_dk.partition_C(sK));
    copy(tdVrdVe, thr_dv.partition_C(sV));
  }
  const bool tma_store = Traits::kTmaStoreDKV && !p.zero_kv_tail;
  if (tma_store) cutlass::arch::fence_view_async_shared();  // read by the TMA stores
  cutlass::arch::NamedBarrier::sync(kConsumerThreads, kBarEpilogue);
  if (tma_store) {
    // Two TMA stores (rows past seqlen_k clipped) from one thread; the others return.
    if (ctid == 0) {
      Tensor mdK = p.tma_dk.get_tma_tensor(p.layout_dk.shape())(_, _, slice, batch);
      Tensor mdV = p.tma_dv.get_tma_tensor(p.layout_dv.shape())(_, _, slice, batch);
      Tensor gdK = local_tile(mdK, Shape<Int<kBlockN>, Int<kHeadDim>>{}, make_coord(n_block, _0{}));
      Tensor gdV = local_tile(mdV, Shape<Int<kBlockN>, Int<kHeadDimV>>{}, make_coord(n_block, _0{}));
      auto [tdKg, tdKs] = tma_partition(p.tma_dk, _0{}, Layout<_1>{}, group_modes<0, 2>(sK),
                                        group_modes<0, 2>(gdK));
      auto [tdVg, tdVs] = tma_partition(p.tma_dv, _0{}, Layout<_1>{}, group_modes<0, 2>(sV),
                                        group_modes<0, 2>(gdV));
      copy(p.tma_dk, tdKs, tdKg);
      copy(p.tma_dv, tdVs, tdVg);
      tma_store_arrive();
      tma_store_wait<0>();  // shared memory read before the CTA ends
    }
  } else {
    // 16-byte chunks of the rows inside the sequence.
    const int rows = min(kBlockN, k_len - n0);
    Element* dk = static_cast<Element*>(attn.dk);
    Element* dv = static_cast<Element*>(attn.dv);
    const int head_kv = slice;  // head_splits = 1
    constexpr int kChunksK = kHeadDim / 8, kChunksV = kHeadDimV / 8;
    for (int i = ctid; i < rows * kChunksK; i += kConsumerThreads) {
      const int r = i / kChunksK, c = (i % kChunksK) * 8;
      *reinterpret_cast<uint4*>(dk + attn.dk_offset(batch, n0 + r, head_kv) + c) =
          *reinterpret_cast<uint4 const*>(&sK(r, c));
    }
    for (int i = ctid; i < rows * kChunksV; i += kConsumerThreads) {
      const int r = i / kChunksV, c = (i % kChunksV) * 8;
      *reinterpret_cast<uint4*>(dv + attn.dv_offset(batch, n0 + r, head_kv) + c) =
          *reinterpret_cast<uint4 const*>(&sV(r, c));
    }
  }
#endif
}

}  // namespace fa4::sm90
