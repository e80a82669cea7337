// Hopper (sm_90a) forward attention kernel: warp-specialized, TMA + WGMMA.
//
// CTA = 3 warpgroups (384 threads):
//   WG0  producer: one elected thread issues the TMA loads (Q once, then K/V blocks through a
//        kStages-deep PipelineTmaAsync each); setmaxnreg drops its registers to kProducerRegs.
//   WG1, WG2 (, WG3)  consumers: each owns 64 of the kBlockM = 128 (192) query rows. S = Q K^T
//        with SS-WGMMA,
//        online softmax in registers (fa4::RowSoftmaxState), O += P V with RS-WGMMA (P stays in
//        registers). With kOverlap the S GEMM of the next key block is issued before the softmax
//        of the current one so tensor cores and the softmax ALU/MUFU work overlap; with kPingPong
//        the two warpgroups also take turns issuing GEMMs (named barriers 2 and 3).
// Epilogue, per warpgroup: its 64 rows of O are normalised, converted, staged in its own smem slab
// (aliasing its sQ slab, or a buffer of their own when persistent) and written back by its own TMA
// store (TMA clips rows past seqlen_q); lse is written from registers.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <cute/tensor.hpp>
#include <cute/arch/copy_sm80.hpp>
#include <cute/arch/copy_sm90_tma.hpp>
#include <cute/arch/mma_sm90.hpp>
#include <cute/atom/copy_traits_sm90_tma.hpp>
#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>
#include <cutlass/cutlass.h>
#include <cutlass/numeric_types.h>
#include <cutlass/pipeline/pipeline.hpp>

#include "common/exp2.h"
#include "common/mask.h"
#include "common/params.h"
#include "common/softmax.h"
#include "sm90/kernel_utils.h"

namespace fa4::sm90 {

using namespace cute;

// One tile's work: (query block, head, batch) and what follows from it. The persistent walks hand
// it from the producer to the consumers through shared memory (FwdTileSlot): derived from the
// walk's order it costs a chain of integer divisions and parameter reads that the consumers would
// otherwise pay between learning the tile and its first S GEMM (~700-1200 cycles, H100 trace).
// Rows: query positions, or with packed GQA (FwdKernelParams::pack_group = G > 1) row r is query
// position r / G of query head head + r % G.
struct alignas(16) FwdTileWork {
  int m_block, head, batch, head_kv;
  int rows, k_len;         // this sequence's rows (q_len, or q_len * G packed) and keys
  int row_begin, row_end;  // rows [row_begin, row_end) of this tile
  int n_min, n_max;        // key blocks [n_min, n_max) the rows can see
  MaskSpec mask;           // bottom-right aligned to the sequence's lengths
  float* lse;              // lse of the sequence's position 0 at this head (nullptr: no lse output)
};
// Packed tiles also carry the query positions of their first and last rows (the mask's block
// tests); a type of its own, so that the other kernels' tile slots stay as they are.
struct alignas(16) FwdTileWorkPacked : FwdTileWork {
  int pos_first, pos_last;  // of rows row_begin and row_begin + kBlockM - 1
  int split;                // split-KV: which of the key blocks' num_splits parts
};
template <class Work>
struct alignas(16) FwdTileSlot {
  Work work;
  int id;  // >= the tile count ends the walk
};

// ------------------------------------------------------------------------------------------------
// Compile-time configuration of one kernel instance.
// ------------------------------------------------------------------------------------------------
template <class Element_, int kHeadDim_, int kHeadDimV_, int kBlockN_, int kStages_, bool kIsLocal_,
          bool kHasSoftcap_, bool kRescale_ = true, int kPolyPer8_ = 0, bool kOverlap_ = true,
          bool kPingPong_ = kOverlap_, bool kGather_ = false, int kNumConsumerWG_ = 2,
          bool kPackGQA_ = false>
struct FwdTraits {
  using Element = Element_;
  static constexpr int kHeadDim = kHeadDim_;    // of q and k
  static constexpr int kHeadDimV = kHeadDimV_;  // of v and out
  // Consumer warpgroups, 64 query rows each: 2, or 3 / 4 (d = 64: more math warps per SM
  // sub-partition to hide the softmax's latencies, at 160 / 112 registers each).
  static constexpr int kNumConsumerWG = kNumConsumerWG_;
  static_assert(kNumConsumerWG >= 2 && kNumConsumerWG <= 4);
  static constexpr int kBlockM = 64 * kNumConsumerWG;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kStages = kStages_;
  static constexpr bool kIsLocal = kIsLocal_;      // causal or sliding window
  static constexpr bool kHasSoftcap = kHasSoftcap_;
  static constexpr bool kRescale = kRescale_;      // FA4 conditional rescaling (threshold 8 in log2)
  static constexpr int kPolyPer8 = kPolyPer8_;     // of every 8 exponentials per row, this many use exp2_poly
  static constexpr bool kOverlap = kOverlap_;      // intra-warpgroup QK^T / softmax overlap
  // Inter-warpgroup ping-pong: the two consumer warpgroups take turns issuing their GEMMs (named
  // barriers), so one warpgroup's softmax runs under the other's tensor-core work.
  static constexpr bool kPingPong = kPingPong_;
  // Paged KV whose pages TMA boxes cannot or should not load (fwd_paged_gather: not a multiple of
  // 8 rows, or more than 2 boxes per stage column): the producer warpgroup gathers K/V rows by
  // cp.async (gather_paged_rows). A kernel of its own, so that the TMA kernels' code stays as is.
  static constexpr bool kGather = kGather_;
  // Packed GQA (FwdKernelParams::pack_group): a kernel of its own, so that the other kernels'
  // code stays as it is (the runtime form cost them 1-5 %, H100).
  static constexpr bool kPackGQA = kPackGQA_;
  using TileWork = conditional_t<kPackGQA, FwdTileWorkPacked, FwdTileWork>;
  static_assert(!kPingPong || kOverlap, "ping-pong is built on the overlapped main loop");
  static_assert(!kPingPong || kNumConsumerWG == 2, "ping-pong takes turns between two warpgroups");
  static_assert(kPolyPer8 >= 0 && kPolyPer8 <= 8);
  static_assert(kHeadDim % 32 == 0 && kHeadDim <= 256);
  static_assert(kHeadDimV % 32 == 0 && kHeadDimV <= kHeadDim, "O staging aliases sQ");
  static_assert(kBlockN % 16 == 0 && kBlockN <= 256);

  static constexpr int kNumThreads = 128 * (kNumConsumerWG + 1);
  // setmaxnreg redistributes the launch allocation (65536 / kNumThreads per thread, rounded down
  // to 8): 2 * 240 + 24 = 3 * 168, 3 * 160 + 24 <= 4 * 128, 4 * 112 + 24 <= 5 * 96. The gather
  // kernels' whole producer warpgroup runs the tile walk and the copies: at 24 registers it spilled
  // inside the per-stage issue (-15..-25 %), so 2 * 232 + 40 there (consumers without spills).
  static constexpr int kProducerRegs = kGather ? 40 : 24;
  static constexpr int kConsumerRegs =
      kNumConsumerWG == 2 ? (kGather ? 232 : 240) : kNumConsumerWG == 3 ? 160 : 112;
  static_assert(128 * (kNumConsumerWG * kConsumerRegs + kProducerRegs) <=
                (65536 / kNumThreads) / 8 * 8 * kNumThreads);

  using TileShapeS = Shape<Int<kBlockM>, Int<kBlockN>, Int<kHeadDim>>;   // (M, N, K) of S = Q K^T
  using TileShapeO = Shape<Int<kBlockM>, Int<kHeadDimV>, Int<kBlockN>>;  // (M, N, K) of O = P V
  using AtomLayoutWG = Layout<Shape<Int<kNumConsumerWG>, _1, _1>>;        // one WG per 64 rows

  using TiledMmaS = decltype(make_tiled_mma(
      GMMA::ss_op_selector<Element, Element, float, TileShapeS>(), AtomLayoutWG{}));
  using TiledMmaO = decltype(make_tiled_mma(
      GMMA::rs_op_selector<Element, Element, float, TileShapeO, GMMA::Major::K, GMMA::Major::MN>(),
      AtomLayoutWG{}));

  // K-major rows of d 16-bit elements: 128B swizzle when the row is a multiple of 128 bytes
  // (d = 64, 128, 192, 256), else 64B swizzle (d = 96). Q / K rows have kHeadDim, V / O kHeadDimV.
  template <int kDim>
  using SmemAtomFor = conditional_t<kDim % 64 == 0, GMMA::Layout_K_SW128_Atom<Element>,
                                    GMMA::Layout_K_SW64_Atom<Element>>;
  using SmemAtom = SmemAtomFor<kHeadDim>;
  using SmemAtomV = SmemAtomFor<kHeadDimV>;
  // sQ as one contiguous (64, d) slab per consumer warpgroup, viewed as (kBlockM, d): a
  // warpgroup's O staging can then alias exactly the Q rows it read, and its epilogue (smem
  // staging, TMA store) never waits for the other warpgroups.
  using SmemLayoutQSlabs =
      decltype(tile_to_shape(SmemAtom{}, Shape<_64, Int<kHeadDim>, Int<kNumConsumerWG>>{}));
  using SmemLayoutQ = decltype(composition(
      SmemLayoutQSlabs{}, Layout<Shape<Shape<_64, Int<kNumConsumerWG>>, Int<kHeadDim>>,
                                 Stride<Stride<_1, Int<64 * kHeadDim>>, _64>>{}));
  static constexpr int kSlabQ = 64 * kHeadDim;  // elements of one warpgroup's sQ slab
  using SmemLayoutK =
      decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockN>, Int<kHeadDim>, Int<kStages>>{}));
  using SmemLayoutV =
      decltype(tile_to_shape(SmemAtomV{}, Shape<Int<kBlockN>, Int<kHeadDimV>, Int<kStages>>{}));
  // V read as the MN-major B operand (kHeadDimV x kBlockN) of O = P V: same bytes, transposed view.
  using SmemLayoutVt = decltype(composition(
      SmemLayoutV{}, make_ordered_layout(Shape<Int<kHeadDimV>, Int<kBlockN>, Int<kStages>>{},
                                         Step<_2, _1, _3>{})));
  // One warpgroup's O staging slab (64 rows): its own buffer when persistent, else aliasing the
  // warpgroup's sQ slab (kHeadDimV <= kHeadDim).
  using SmemLayoutO = decltype(tile_to_shape(SmemAtomV{}, Shape<_64, Int<kHeadDimV>>{}));
  static_assert(cosize_v<SmemLayoutO> <= kSlabQ);
  // The epilogue's view of one warpgroup's O accumulator (same fragment as TiledMmaO's).
  using TiledMmaOWG = decltype(make_tiled_mma(
      GMMA::rs_op_selector<Element, Element, float, Shape<_64, Int<kHeadDimV>, Int<kBlockN>>,
                           GMMA::Major::K, GMMA::Major::MN>()));

  // Global tensors: (rows, dim, head, batch), dim contiguous.
  using GShape = Shape<int32_t, int32_t, int32_t, int32_t>;
  using GStride = Stride<int64_t, _1, int64_t, int64_t>;
  using GLayout = Layout<GShape, GStride>;

  using TmaQ = decltype(make_tma_copy(
      SM90_TMA_LOAD{}, make_tensor(make_gmem_ptr(static_cast<Element const*>(nullptr)), GLayout{}),
      SmemLayoutQ{}, Shape<Int<kBlockM>, Int<kHeadDim>>{}, _1{}));
  using TmaK = decltype(make_tma_copy(
      SM90_TMA_LOAD{}, make_tensor(make_gmem_ptr(static_cast<Element const*>(nullptr)), GLayout{}),
      take<0, 2>(SmemLayoutK{}), Shape<Int<kBlockN>, Int<kHeadDim>>{}, _1{}));
  using TmaV = decltype(make_tma_copy(
      SM90_TMA_LOAD{}, make_tensor(make_gmem_ptr(static_cast<Element const*>(nullptr)), GLayout{}),
      take<0, 2>(SmemLayoutV{}), Shape<Int<kBlockN>, Int<kHeadDimV>>{}, _1{}));
  using TmaO = decltype(make_tma_copy(
      SM90_TMA_STORE{}, make_tensor(make_gmem_ptr(static_cast<Element*>(nullptr)), GLayout{}),
      SmemLayoutO{}, Shape<_64, Int<kHeadDimV>>{}, _1{}));

  // Paged KV whose page_size is not a multiple of kBlockN (but of 8): each stage is loaded as
  // boxes of kv_box_rows = 8 * 2^j rows (the largest that divides page_size and kBlockN, <= 64),
  // each from its own page, starting on a swizzle-atom row block. The descriptors are built on the
  // host for that many rows, while the kernel's copies keep the 8-row types and issue one box per
  // kv_box_rows / 8 groups: a stage's rows are contiguous per swizzle-atom column (tile_to_shape
  // fills rows first), so a taller box lands on the same rows its 8-row groups would.
  static constexpr int kRowGroup = 8;
  static_assert(kBlockN % kRowGroup == 0);
  template <int kRows>
  using SmemLayoutKRowsOf = decltype(composition(
      take<0, 2>(SmemLayoutK{}), make_tile(Layout<Int<kRows>>{}, Layout<Int<kHeadDim>>{})));
  template <int kRows>
  using SmemLayoutVRowsOf = decltype(composition(
      take<0, 2>(SmemLayoutV{}), make_tile(Layout<Int<kRows>>{}, Layout<Int<kHeadDimV>>{})));
  using SmemLayoutKRows = SmemLayoutKRowsOf<kRowGroup>;
  using SmemLayoutVRows = SmemLayoutVRowsOf<kRowGroup>;
  using TmaKRows = decltype(make_tma_copy(
      SM90_TMA_LOAD{}, make_tensor(make_gmem_ptr(static_cast<Element const*>(nullptr)), GLayout{}),
      SmemLayoutKRows{}, Shape<Int<kRowGroup>, Int<kHeadDim>>{}, _1{}));
  using TmaVRows = decltype(make_tma_copy(
      SM90_TMA_LOAD{}, make_tensor(make_gmem_ptr(static_cast<Element const*>(nullptr)), GLayout{}),
      SmemLayoutVRows{}, Shape<Int<kRowGroup>, Int<kHeadDimV>>{}, _1{}));

  using Pipeline = cutlass::PipelineTmaAsync<kStages>;
  using PipelineState = typename Pipeline::PipelineState;

  static constexpr uint32_t kTmaBytesQ = kBlockM * kHeadDim * sizeof(Element);
  static constexpr uint32_t kTmaBytesK = kBlockN * kHeadDim * sizeof(Element);
  static constexpr uint32_t kTmaBytesV = kBlockN * kHeadDimV * sizeof(Element);

  // Persistent grid (one CTA per SM walking the tiles) where O can be staged in a buffer of its
  // own: the producer then loads the next tile's Q and first K/V blocks while the consumers finish
  // the current tile, which a fresh CTA per tile exposes (short sequences pay it on every ~8
  // blocks). Without a local mask every tile is the same work and CTA c takes tiles c, c + grid,
  // ...; with one (causal tiles differ in work) the CTAs take the next tile from a counter in
  // global memory, heaviest first (fwd_workspace_bytes() says when the launch provides it).
  static constexpr int kSmemOperandBytes =
      int(sizeof(Element)) * (cosize_v<SmemLayoutQ> + cosize_v<SmemLayoutK> + cosize_v<SmemLayoutV>);
  static constexpr int kSmemOBytes = int(sizeof(Element)) * cosize_v<SmemLayoutO> * kNumConsumerWG;
  static constexpr bool kFitsOBuffer = kSmemOperandBytes + kSmemOBytes + 1024 <= 227 * 1024;
  // d = 192 (d_v 192 or 128) has no room for an O buffer but walks persistently too (static
  // without a local mask, the tile counter with one): each warpgroup stages its O in the V stage
  // of the tile's last key block, held past the last P V and released once the stores have read
  // it (the next tile needs it only for its second V block). d_v 192: one slab, warpgroup 0 first
  // (once warpgroup 1's last P V is done with the stage), warpgroup 1 once warpgroup 0's store has
  // read it; d_v 128: a slab each, once both P V are done. H100 harness against one tile per CTA:
  // no mask d_v 192 +1.4-2.1 %, d_v 128 +3-7 % (1k-16k); causal +3-9 % at 1k-8k, -1.4 / -2.9 % at
  // 16k. Not d = 256, where the static walk lost 3-8 % at every length (one Q buffer: the next Q
  // lands ~2000 cycles after the epilogue; the 16k loss is not explained by the tile boundaries;
  // perf notes, 22nd session).
  static constexpr bool kOInV = !kGather && !kFitsOBuffer && kNumConsumerWG == 2 &&
                                kHeadDim == 192 && cosize_v<SmemLayoutO> <= kBlockN * kHeadDimV;
  // ... where a V stage holds both warpgroups' O (d_v 128: 32 KiB), each has its own half.
  static constexpr bool kOSlabPerWG = 2 * cosize_v<SmemLayoutO> <= kBlockN * kHeadDimV;
  // (Three consumer warpgroups with a local mask stay one tile per CTA: at 160 registers the
  // dynamic walk's per-tile state spills into the main loop.) The gather kernels (local mask
  // path) walk from the tile counter too at d <= 128; d 192 / 256 stay one tile per CTA.
  static constexpr bool kPersistent =
      kIsLocal ? (kHeadDim <= 128 && kHeadDimV <= 128 || kOInV) && kNumConsumerWG == 2
               : kFitsOBuffer || kOInV;
  static constexpr bool kTileCounter = kPersistent && kIsLocal;
  // The static walks (persistent, no counter) keep two Q buffers: tile i + 1 is announced (its
  // FwdTileWork and id in ss.tile[(i + 1) % 2]) and its Q loaded while tile i's first key block
  // loads, a whole tile ahead; the consumers then neither derive a tile (~800-1200 cycles of
  // divisions and parameter reads at its start) nor wait for its Q (~400-1300 more), H100 trace.
  // (kOInV: no room for a second Q buffer; tile i is announced when the producer reaches it.)
  static constexpr int kQBuffers = kPersistent && !kTileCounter && !kOInV ? 2 : 1;
  static constexpr bool kAnnounce = kPersistent;  // consumers learn each tile from ss.tile
  static_assert(!kPersistent || kOInV ||
                kSmemOperandBytes + (kQBuffers - 1) * int(sizeof(Element)) * cosize_v<SmemLayoutQ> +
                        kSmemOBytes + 1024 <= 227 * 1024);
  // (M, d, buffer) view of the Q buffers, each laid out as SmemLayoutQ.
  using SmemLayoutQBuffers = decltype(composition(
      tile_to_shape(SmemAtom{}, Shape<_64, Int<kHeadDim>, Int<kNumConsumerWG * kQBuffers>>{}),
      Layout<Shape<Shape<_64, Int<kNumConsumerWG>>, Int<kHeadDim>, Int<kQBuffers>>,
             Stride<Stride<_1, Int<64 * kHeadDim>>, _64, Int<64 * kHeadDim * kNumConsumerWG>>>{}));
  // Tile boundaries of the persistent kernels (H100 per-tile clock trace, bench/trace_fwd.py: at
  // d = 64 causal 1k a tile is ~4.5 key blocks of ~2100 cycles plus ~1400 for its first S GEMM,
  // ~1100 for its last P V and ~1200 for its epilogue).
  //   kDeferEpilogue: a tile's epilogue (O staged and stored) waits, converted in registers,
  //     until the next tile's first S GEMM is issued. Only without ping-pong: there the earlier
  //     return to the next tile's Q wait costs more than it saves (d 128 causal 1k -3 %).
  //   kPrefetchQ: the next tile's Q into L2 as soon as the producer knows the tile, since its
  //     load cannot start before sQ frees and the deferred epilogue no longer covers it.
  //   kEarlyK: the tile's first K block loads before the producer waits for sQ to free. Not for
  //     the ping-pong tile-counter walk (d 128 causal: -0.7 %, two stages). (The static walks
  //     load Q a tile ahead into their second buffer instead.)
  static constexpr bool kDeferEpilogue = kPersistent && !kOInV && kNumConsumerWG == 2 && !kPingPong;
  static constexpr bool kPrefetchQ = kDeferEpilogue;
  static constexpr bool kEarlyK = kDeferEpilogue;
  // kKAhead: the producer issues K(n - 1) before V(n). With two stages K(n - 1)'s stage frees
  //   once S(n + 1) is done but V(n)'s only after P V(n + 2); in K(n), V(n) order K(n - 1) waited
  //   behind V(n)'s acquire and had one key block's time to land. d = 256 (64-key blocks, the
  //   shortest block time per stage), on tiles of at most kKAheadMaxBlocks key blocks: H100
  //   harness +3.9 / +4.0 / +1.5 % at 1k / 2k / 4k, but -1.1 / -3.9 % at 8k / 16k, where Nsight
  //   shows the kernel 3.4 % fewer cycles at a 3 % lower clock (power-limited; perf notes, 24th
  //   session). d 128 / d 64: 0 / -1 %.
  static constexpr bool kKAhead = kBlockN == 64 && kHeadDim == 256 && !kGather;
  static constexpr int kKAheadMaxBlocks = 64;
  static_assert(!(kKAhead && kEarlyK));

  struct Empty {};
  struct SharedStorage {
    alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutQ> * kQBuffers> q;
    alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutK>> k;
    alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutV>> v;
    // O staging: its own buffer when persistent, else it aliases q (or, kOInV, a V stage).
    alignas(1024) conditional_t<
        kPersistent && !kOInV, cute::array_aligned<Element, cosize_v<SmemLayoutO> * kNumConsumerWG>,
        Empty> o;
    // Per Q buffer: Q landed (and tile set); consumers done with Q and tile (persistent); the
    // tile the producer announced (persistent).
    alignas(16) cutlass::arch::ClusterTransactionBarrier barrier_q[kQBuffers];
    cutlass::arch::ClusterBarrier barrier_q_free[kQBuffers];
    FwdTileSlot<TileWork> tile[kQBuffers];
    // Paged KV in row boxes: the page of each box of the stage being loaded.
    int32_t box_page[kBlockN / kRowGroup];
    // Persistent gather kernels: the next tile, from the leader to the other producer threads
    // (two slots: one may be rewritten only after every thread has read it).
    conditional_t<kGather && kTileCounter, int[2], Empty> gather_tile;
    typename Pipeline::SharedStorage pipe_k;
    typename Pipeline::SharedStorage pipe_v;
  };
  static constexpr int kSmemBytes = int(sizeof(SharedStorage));
};

// Everything the kernel reads, resolved on the host.
template <class Traits>
struct FwdKernelParams {
  typename Traits::TmaQ tma_q;
  typename Traits::TmaK tma_k;
  typename Traits::TmaV tma_v;
  typename Traits::TmaO tma_o;
  // kv_box_rows-row boxes (8-row types) over the same k/v views; only built and used when
  // kv_row_groups.
  typename Traits::TmaKRows tma_k_rows;
  typename Traits::TmaVRows tma_v_rows;
  // q/out: (rows, d or d_v, heads, batch), or (total_q, d or d_v, heads, 1) when q is varlen.
  // k/v:   (rows, d, heads_kv, batch), (page_size, d, heads_kv, num_pages) when paged, or
  //        (total_k, d, heads_kv, 1) when k is varlen (cu_seqlens_k without a page table).
  typename Traits::GLayout layout_q, layout_k, layout_v, layout_o;
  AttnParams attn;       // lengths, lse / out addressing, page table, mask settings
  int qhead_per_kvhead;
  float scale_log2;      // softmax_scale * log2(e) (no softcap)
  bool store_o_predicated;  // rows past q_len(b) belong to someone else: no TMA store of O
  bool zero_v_tail;         // V rows past k_len(b) may hold anything (NaN, next sequence): clear them in smem
  bool kv_row_groups;       // paged with page_size % kBlockN != 0 (page_size % 8 == 0): row boxes
  int kv_box_rows;          // their rows: 8, 16, 32 or 64
  // Packed GQA: 1, or G = qhead_per_kvhead when a tile's rows are (query position, head of the
  // K/V head's group) pairs, head fastest (one K/V stream then serves G query heads, and short
  // query sequences fill the tile). Q is then loaded by the consumers (the rows are not one TMA
  // box for every G) and O stored by the predicated path.
  int pack_group;
  // Split-KV (packed kernels): the tile's key blocks divided into num_splits parts, each part's O
  // (fp32, normalised by its own sum) and lse written to o_partial (splits, heads_q,
  // partial_rows, d_v) / lse_partial (splits, heads_q, partial_rows), merged by combine_splits.
  int num_splits;
  int64_t partial_rows;
  float* o_partial;
  float* lse_partial;
  int tile_heads;           // heads_q, or heads_kv when packed; times num_splits
  int num_m_blocks;         // row blocks per (tile head, batch): tiles = num_m_blocks * tile_heads * batch
  int group_pairs;          // kTileCounter order: (head, batch) pairs per L2 group
  int* tile_counter;        // kTileCounter: zeroed int, tiles handed out past the first gridDim.x
};

// Per-thread softmax over the two rows it holds of a 64-row warpgroup tile.
template <class Traits>
struct ThreadSoftmax {
  static constexpr int kRows = 2;
  RowSoftmaxState<float> st[kRows];

  CUTE_DEVICE void init() {
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) st[r].init();
  }

  // s: S accumulator in (row, col) view, raw q.k (or softcapped, masked). Turns it into
  // exp2(s * scale - max) in place and returns the per-row accumulator rescale factors.
  template <class TS>
  CUTE_DEVICE void online(TS& s, float scale_log2, float (&o_scale)[kRows]) {
    static_assert(size<0>(TS{}) == kRows);
    constexpr float kThreshold = Traits::kRescale ? kRescaleThresholdLog2 : 0.0f;
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      float m = -INFINITY;
      CUTE_UNROLL
      for (int c = 0; c < size<1>(s); ++c) m = fmaxf(m, s(r, c));
      m = detail::quad_max(m) * scale_log2;  // scale > 0: max commutes with the scaling
      o_scale[r] = st[r].update_max(m, kThreshold);
      const float mx = st[r].max_for_exp();
      float sum = 0.f;
      CUTE_UNROLL
      for (int c = 0; c < size<1>(s); ++c) {
        const float x = fmaf(s(r, c), scale_log2, -mx);
        float p;
        if constexpr (Traits::kPolyPer8 > 0) {
          p = (c % 8) < Traits::kPolyPer8 ? exp2_poly(x) : detail::ex2_approx(x);
        } else {
          p = detail::ex2_approx(x);
        }
        s(r, c) = p;
        sum += p;
      }
      st[r].row_sum += sum;  // thread-partial; reduced across the quad in finalize()
    }
  }

  // Reduces the row sums, adds the sink, returns 1/sum-style output scales.
  CUTE_DEVICE void finalize(float const (&sink_log2)[kRows], bool has_sink,
                           float (&o_scale)[kRows]) {
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      st[r].row_sum = detail::quad_sum(st[r].row_sum);
      float f = 1.f;
      if (has_sink) f = st[r].add_sink(sink_log2[r]);
      o_scale[r] = f * st[r].inv_sum();
    }
  }
};

// Gathered stages (paged KV, fwd_paged_gather): the four warps of the producer warpgroup copy a
// stage in passes of 32 rows, one pass per warp (kBlockN <= 128); with fewer passes than warps,
// the warps of a pass split its chunks (kBlockN 64: two per pass; 96: the fourth warp idles).
template <int kBlockN>
struct GatherPasses {
  static constexpr int kWarps = 4, kPasses = kBlockN / 32;
  static constexpr int kSplit = kPasses >= kWarps ? 1 : kWarps / kPasses;  // warps per pass
  static_assert(kBlockN % 32 == 0 && kPasses <= kWarps);
  CUTE_DEVICE static int pass() { return threadIdx.x / 32 % kWarps / kSplit; }  // >= kPasses: none
};

// The key of a gathered stage that this producer thread looks up (lane l of its warp's pass: row
// 32 * pass + l): its page-table entry and its row in the page. K and V of a block share it, and it
// is read a block ahead, so the page-table latency overlaps the copies. Rows past the page table
// (beyond k_len: masked / zeroed by the consumers) take the last mapped row.
struct GatherRow {
  int page;
  int row;
};
template <int kBlockN>
__device__ __forceinline__ GatherRow gather_locate(const int32_t* page_table,
                                                   AttnParams const& attn, int key0) {
  using G = GatherPasses<kBlockN>;
  const int cap = attn.page_table_cols * attn.page_size;
  const int key = min(key0 + 32 * min(G::pass(), G::kPasses - 1) + int(threadIdx.x % 32), cap - 1);
  const int i = key / attn.page_size;
  return {page_table[i], key - i * attn.page_size};
}

// A gathered stage of one head of paged K or V (base: the head's first element of page 0) into
// the swizzled stage tile sX by cp.async (LDGSTS) in 16-byte chunks (the swizzle permutes whole
// chunks): each warp copies its pass's rows, each row's address shuffled from the lane that
// located it. Each lane keeps one swizzle phase, so its copies take constant offsets from one or
// two addresses (~1.5 instructions per copy instead of ~16 when every copy swizzled its own
// address: the gather ran 30-45 % faster at d 128 / 256, H200). Each lane's
// copies then arrive on `bar` as they land (cp.async.mbarrier.arrive raises the barrier's pending
// count at issue, so the caller must hold the phase open until every lane has issued).
template <int kBlockN, class Element, class SmemTile>
__device__ __forceinline__ void gather_paged_rows(Element const* base, int64_t page_stride,
                                                  int64_t row_stride, GatherRow row, SmemTile sX,
                                                  uint64_t* bar) {
  using G = GatherPasses<kBlockN>;
  constexpr int kChunks = decltype(size<1>(sX))::value / 8;  // 16-byte chunks per row
  const int lane = threadIdx.x % 32, pass = G::pass();
  if (pass < G::kPasses) {
    const uint64_t src =
        reinterpret_cast<uint64_t>(base + row.page * page_stride + row.row * row_stride);
    // (row, chunk) of the pass goes to the swizzled offset of (row, chunk) within its 32 rows: a
    // pass starts on a whole number of swizzle atoms, so only that offset carries the swizzle.
    auto const* x0 = &sX(0, 0);
    auto* dst0 = &sX(32 * pass, 0);
    auto dst = [&](int r, int c) { return reinterpret_cast<uint128_t*>(dst0 + (&sX(r, c * 8) - x0)); };
    // Lane 4 rr + cc copies chunks cc + 4 g of rows 8 m + rr. A swizzle atom is 8 rows of
    // kAtomChunks chunks (128B swizzle: 8, d % 64 == 0; 64B: 4, d 96) and atoms tile the rows
    // first, so the lane's rows share one swizzle phase and every destination is one of
    // kAtomChunks / 4 per-lane addresses (g's place within an atom row) plus a constant: one atom
    // per m, one column of atoms (kBlockN rows) per kAtomChunks / 4 values of g. The sources
    // too: one shuffled row address per m. A warp instruction reads 64 bytes of 8 rows (whole
    // 32-byte sectors).
    constexpr int kAtomChunks = kChunks % 8 == 0 ? 8 : 4;
    constexpr int kGroupsPerAtom = kAtomChunks / 4;
    constexpr int kGroups = kChunks / 4 / G::kSplit;  // chunk groups of 4 per warp of the pass
    static_assert(kChunks % 4 == 0 && kChunks / 4 % G::kSplit == 0);
    const int rr = lane / 4, cc = lane % 4, g0 = threadIdx.x / 32 % G::kSplit * kGroups;
    uint128_t* dst_g[kGroupsPerAtom];
#pragma unroll
    for (int j = 0; j < kGroupsPerAtom; ++j) dst_g[j] = dst(rr, cc + 4 * ((g0 + j) % kGroupsPerAtom));
#pragma unroll
    for (int m = 0; m < 4; ++m) {
      auto const* from = reinterpret_cast<uint128_t const*>(__shfl_sync(~0u, src, 8 * m + rr)) + cc;
#pragma unroll
      for (int q = 0; q < kGroups; ++q) {
        const int g = g0 + q;
        SM80_CP_ASYNC_CACHEGLOBAL<uint128_t>::copy(
            from[4 * g], dst_g[q % kGroupsPerAtom][8 * kAtomChunks * m +
                                                   g / kGroupsPerAtom * (kBlockN * kAtomChunks)]);
      }
    }
  }
  cutlass::arch::cpasync_barrier_arrive(bar);
}

// ------------------------------------------------------------------------------------------------
// The kernel
// ------------------------------------------------------------------------------------------------
template <class Traits>
__global__ void __launch_bounds__(Traits::kNumThreads, 1)
    fwd_kernel(CUTE_GRID_CONSTANT FwdKernelParams<Traits> const p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using Element = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM;
  constexpr int kBlockN = Traits::kBlockN;
  constexpr int kHeadDim = Traits::kHeadDim;
  using Pipeline = typename Traits::Pipeline;
  using PipelineState = typename Traits::PipelineState;
  using SharedStorage = typename Traits::SharedStorage;

  extern __shared__ __align__(1024) char smem_raw[];
  SharedStorage& ss = *reinterpret_cast<SharedStorage*>(smem_raw);

  const int lane = threadIdx.x % 32;
  const int wg = threadIdx.x / 128;

  const AttnParams& attn = p.attn;

  // Tiles are (query block, head, batch), query blocks last-to-first within a (head, batch) so the
  // heavier (causal: longer) ones start first. One tile per CTA from the 3-D grid, or, persistent,
  // CTA c walks tiles c, c + gridDim.x, ... of the same order.
  const int num_tiles = Traits::kPersistent ? p.num_m_blocks * p.tile_heads * attn.batch : 1;
  const int first_tile = Traits::kPersistent ? blockIdx.x : 0;
  const int tile_step = Traits::kPersistent ? gridDim.x : 1;
  // The producer's walk (the consumers learn kTileCounter tiles from its announcements).
  auto next_tile = [&](int t) {
    if constexpr (Traits::kTileCounter) {
      if (p.tile_counter != nullptr) return int(gridDim.x) + atomicAdd(p.tile_counter, 1);
    }
    return t + tile_step;
  };
  using TileWork = typename Traits::TileWork;
  auto tile_work = [&](int t) {
    TileWork w;
    if constexpr (Traits::kTileCounter) {
      // Heaviest (longest under the mask) first, within groups of group_pairs (head, batch) pairs
      // whose K/V fit in L2 together: query block descending, then the pair.
      const int pairs = p.tile_heads * attn.batch;
      const int per_group = p.group_pairs * p.num_m_blocks;
      const int g = t / per_group, u = t - g * per_group;
      const int in_group = min(p.group_pairs, pairs - g * p.group_pairs);
      const int pair = g * p.group_pairs + u % in_group;
      w.m_block = p.num_m_blocks - 1 - u / in_group;
      w.head = pair % p.tile_heads;
      w.batch = pair / p.tile_heads;
    } else if constexpr (Traits::kPersistent) {
      w.m_block = p.num_m_blocks - 1 - t % p.num_m_blocks;
      w.head = (t / p.num_m_blocks) % p.tile_heads;
      w.batch = t / (p.num_m_blocks * p.tile_heads);
    } else {
      w.m_block = gridDim.x - 1 - blockIdx.x;
      w.head = blockIdx.y;
      w.batch = blockIdx.z;
    }
    const int G = Traits::kPackGQA ? p.pack_group : 1;
    if constexpr (Traits::kPackGQA) {
      w.split = w.head % p.num_splits;
      w.head /= p.num_splits;
    }
    const int q_len = attn.q_len(w.batch);
    w.head_kv = G > 1 ? w.head : w.head / p.qhead_per_kvhead;
    w.head = G > 1 ? w.head * G : w.head;  // (packed: the group's first query head)
    w.rows = q_len * G;
    w.k_len = attn.k_len(w.batch);
    w.row_begin = w.m_block * kBlockM;
    w.row_end = min(w.row_begin + kBlockM, w.rows);
    if constexpr (Traits::kPackGQA) {
      w.pos_first = w.row_begin / G;
      w.pos_last = (w.row_begin + kBlockM - 1) / G;
    }
    w.mask = make_mask(q_len, w.k_len, attn.causal, attn.window_left, attn.window_right);
    int col_begin = 0, col_end = w.k_len;
    if constexpr (Traits::kIsLocal) {
      if constexpr (Traits::kPackGQA)
        w.mask.key_range(w.pos_first, (w.row_end - 1) / G + 1, &col_begin, &col_end);
      else
        w.mask.key_range(w.row_begin, w.row_end, &col_begin, &col_end);
    }
    w.n_min = col_begin / kBlockN;
    w.n_max = col_begin < col_end ? (col_end + kBlockN - 1) / kBlockN : w.n_min;
    if constexpr (Traits::kPackGQA) {
      if (p.num_splits > 1) {  // this split's share of the key blocks (maybe none)
        const int per_split = (w.n_max - w.n_min + p.num_splits - 1) / p.num_splits;
        w.n_min = min(w.n_min + w.split * per_split, w.n_max);
        w.n_max = min(w.n_min + per_split, w.n_max);
      }
    }
    w.lse = attn.lse != nullptr ? attn.lse + attn.lse_offset(w.batch, 0, w.head) : nullptr;
    return w;
  };

  if (threadIdx.x == 0) {
    prefetch_tma_descriptor(p.tma_q.get_tma_descriptor());
    prefetch_tma_descriptor(p.tma_k.get_tma_descriptor());
    prefetch_tma_descriptor(p.tma_v.get_tma_descriptor());
    prefetch_tma_descriptor(p.tma_o.get_tma_descriptor());
    if (p.kv_row_groups) {
      prefetch_tma_descriptor(p.tma_k_rows.get_tma_descriptor());
      prefetch_tma_descriptor(p.tma_v_rows.get_tma_descriptor());
    }
    for (int b = 0; b < Traits::kQBuffers; ++b) {
      ss.barrier_q[b].init(1);
      if constexpr (Traits::kPersistent) ss.barrier_q_free[b].init(128 * Traits::kNumConsumerWG);
    }
  }
  typename Pipeline::Params pp;
  pp.transaction_bytes = Traits::kTmaBytesK;
  pp.role = wg == 0 ? Pipeline::ThreadCategory::Producer : Pipeline::ThreadCategory::Consumer;
  pp.is_leader = threadIdx.x == 0;  // the issuing thread below
  pp.num_consumers = 128 * Traits::kNumConsumerWG;
  Pipeline pipe_k(ss.pipe_k, pp, Shape<_1, _1, _1>{});
  pp.transaction_bytes = Traits::kTmaBytesV;
  Pipeline pipe_v(ss.pipe_v, pp, Shape<_1, _1, _1>{});
  __syncthreads();

  Tensor sQ = make_tensor(make_smem_ptr(ss.q.data()), typename Traits::SmemLayoutQBuffers{});
  Tensor sK = make_tensor(make_smem_ptr(ss.k.data()), typename Traits::SmemLayoutK{});
  Tensor sV = make_tensor(make_smem_ptr(ss.v.data()), typename Traits::SmemLayoutV{});
  Tensor sVt = make_tensor(make_smem_ptr(ss.v.data()), typename Traits::SmemLayoutVt{});

  if (wg == 0) {
    // ------------------------------------------------------------------ producer
    cutlass::arch::warpgroup_reg_dealloc<Traits::kProducerRegs>();
    // Thread 0 issues every TMA load and drives the pipelines. The gather kernel (paged KV,
    // fwd_paged_gather) loads K/V with the whole warpgroup.
    const bool leader = threadIdx.x == 0;
    if (leader || Traits::kGather) {
      PipelineState wr = cutlass::make_producer_start_state<Pipeline>();  // next V (and K) stage
      PipelineState wr_k = wr;  // kKAhead: the next K stage
      // Persistent: every tile is announced to the consumers, through ss.tile[b] (its work,
      // derived here) and barrier_q[b] (with Q's bytes into Q buffer b when it has work), then one
      // id past the end; announcing the CTA's tile i into buffer b = i % kQBuffers waits for
      // barrier_q_free[b]: the consumers' S GEMMs of tile i - kQBuffers are done with its Q and
      // they have read its ss.tile. The tile-counter walk announces tile i when it takes it; the
      // static walks announce tile i + 1 while tile i's first key block loads.
      // Tile tw's Q (global source; shared destination, indexed by Q buffer).
      auto q_tiles = [&](const TileWork& tw) {
        const bool q_varlen = attn.q_varlen();
        Tensor mQ =
            p.tma_q.get_tma_tensor(p.layout_q.shape())(_, _, tw.head, q_varlen ? 0 : tw.batch);
        Tensor mQb =
            domain_offset(make_coord(q_varlen ? attn.cu_seqlens_q[tw.batch] : 0, _0{}), mQ);
        Tensor gQ =
            local_tile(mQb, Shape<Int<kBlockM>, Int<kHeadDim>>{}, make_coord(tw.m_block, _0{}));
        return tma_partition(p.tma_q, _0{}, Layout<_1>{}, group_modes<0, 2>(sQ),
                             group_modes<0, 2>(gQ));
      };
      auto load_q = [&](const TileWork& tw, int b) {
        if (Traits::kPackGQA && p.pack_group > 1) {  // the consumers load packed rows themselves
          ss.barrier_q[b].arrive();
          return;
        }
        auto [tQg, tQs] = q_tiles(tw);
        ss.barrier_q[b].arrive_and_expect_tx(Traits::kTmaBytesQ);
        copy(p.tma_q.with(reinterpret_cast<uint64_t&>(ss.barrier_q[b]), 0), tQg, tQs(_, b));
      };
      auto announce = [&](int i, int t, const TileWork& tw, bool has_work) {
        const int b = i % Traits::kQBuffers;
        if (i >= Traits::kQBuffers) ss.barrier_q_free[b].wait((i / Traits::kQBuffers - 1) & 1);
        ss.tile[b].work = tw;
        ss.tile[b].id = t;
        if (has_work) load_q(tw, b);
        else ss.barrier_q[b].arrive();
      };
      auto tile_has_work = [&](int t, const TileWork& tw) {
        return t < num_tiles && tw.row_begin < tw.rows && tw.n_max > tw.n_min;
      };
      // Static walks: the next tile's announcement, derived here.
      auto announce_next = [&](int i, int t) {
        const int t_next = next_tile(t);
        const TileWork w_next = tile_work(t_next < num_tiles ? t_next : 0);
        announce(i + 1, t_next, w_next, tile_has_work(t_next, w_next));
      };
      constexpr bool kAhead = Traits::kQBuffers == 2;
      if constexpr (kAhead) {
        const TileWork w0 = tile_work(first_tile);
        announce(0, first_tile, w0, tile_has_work(first_tile, w0));
      }
      // The gather kernels' producer warpgroup walks the tiles together: the leader takes each
      // next tile and hands it to the others.
      auto next_tile_all = [&](int t, int i) {
        if constexpr (Traits::kGather && Traits::kTileCounter) {
          if (leader) ss.gather_tile[i % 2] = next_tile(t);
          cutlass::arch::NamedBarrier::sync(128, 1);
          return ss.gather_tile[i % 2];
        } else {
          return next_tile(t);
        }
      };
      int i_tile = 0;
      for (int t = first_tile; Traits::kPersistent || t < num_tiles;
           t = next_tile_all(t, i_tile), ++i_tile) {
        const bool in_range = t < num_tiles;
        if (kAhead && !in_range) break;  // its end was announced
        const TileWork w = [&] {
          if constexpr (kAhead) return ss.tile[i_tile % 2].work;
          else return tile_work(in_range ? t : 0);
        }();
        // Tiles without rows or without visible keys load nothing (the consumers skip them or
        // only write zeros).
        const bool has_work = in_range && w.row_begin < w.rows && w.n_max > w.n_min;
        const int batch = w.batch, n_min = w.n_min, n_max = w.n_max;
        Tensor mK = p.tma_k.get_tma_tensor(p.layout_k.shape())(_, _, w.head_kv, _);  // (rows, d, B)
        Tensor mV = p.tma_v.get_tma_tensor(p.layout_v.shape())(_, _, w.head_kv, _);
        // Varlen keys (cu_seqlens_k, no page table): one (total_k)-row sequence, this batch entry's
        // keys start at row cu_seqlens_k[batch]. Rows past k_len in the last block belong to the
        // next sequence: K is masked there, V is cleared in smem (zero_v_tail).
        const bool k_varlen = attn.cu_seqlens_k != nullptr && !attn.paged();
        const int k_row0 = k_varlen && has_work ? attn.cu_seqlens_k[batch] : 0;
        // Gather kernels: the keys this thread locates for block n (K and V), and for the next block.
        GatherRow gather_row{}, gather_next{};
        int gather_next_n = -1;
        // K (is_v false) or V of key block n into stage st.
        auto load_kv = [&](int n, bool is_v, const PipelineState& st) {
          if constexpr (Traits::kGather) {
            // Pages that do not start on an 8-row swizzle-atom boundary of the stage tile, where a
            // TMA box would have to start, or that would take more than 2 boxes per stage column
            // (fwd_paged_gather): the producer warpgroup gathers the K/V rows. Each
            // thread waits for the consumers to free the stage; the leader's acquire also arms
            // the stage's barrier with its bytes, which holds the phase open while the threads
            // issue; once all have (named barrier 1), the leader completes those bytes, and the
            // phase ends with the last copy.
            static_assert(!Traits::kKAhead, "V(n) follows K(n) here");
            const int32_t* pt = attn.page_table + batch * attn.page_table_batch_stride;
            auto gather = [&](auto& pipe, Element const* base, int64_t page_stride,
                              int64_t row_stride, auto sX, uint32_t bytes) {
              pipe.producer_acquire(st);
              uint64_t* bar = pipe.producer_get_barrier(st);
              gather_paged_rows<kBlockN>(base, page_stride, row_stride, gather_row, sX, bar);
              cutlass::arch::NamedBarrier::sync(128, 1);
              if (leader) {  // (this CTA is rank 0 of its one-CTA cluster)
                cutlass::arch::ClusterTransactionBarrier::complete_transaction(bar, 0, bytes);
              }
            };
            if (!is_v) {
              gather_row = n == gather_next_n ? gather_next
                                              : gather_locate<kBlockN>(pt, attn, n * kBlockN);
              gather(pipe_k, static_cast<Element const*>(attn.k) + w.head_kv * attn.k_head_stride,
                     attn.k_batch_stride, attn.k_row_stride, sK(_, _, st.index()),
                     Traits::kTmaBytesK);
              if (n > n_min) {  // the next block's keys, read while this block's V goes out
                gather_next = gather_locate<kBlockN>(pt, attn, (n - 1) * kBlockN);
                gather_next_n = n - 1;
              }
            } else {
              gather(pipe_v, static_cast<Element const*>(attn.v) + w.head_kv * attn.v_head_stride,
                     attn.v_batch_stride, attn.v_row_stride, sV(_, _, st.index()),
                     Traits::kTmaBytesV);
            }
          } else if (p.kv_row_groups) {
            // Paged, page_size % kBlockN != 0: kBlockN / kv_box_rows boxes per stage, each from
            // the page holding its first key. Boxes past the page table (beyond k_len, masked /
            // zeroed in the consumers) reload the last mapped rows so the stage's byte count is
            // complete.
            constexpr int kG = Traits::kRowGroup;
            const int box = p.kv_box_rows;
            Tensor mKr = p.tma_k_rows.get_tma_tensor(p.layout_k.shape())(_, _, w.head_kv, _);
            Tensor mVr = p.tma_v_rows.get_tma_tensor(p.layout_v.shape())(_, _, w.head_kv, _);
            const int cap = attn.page_table_cols * attn.page_size;  // multiple of 8
            const int32_t* pt = attn.page_table + batch * attn.page_table_batch_stride;
            // f(b, g, i, r) for each box b of block n: its first 8-row group g of the stage,
            // page-table entry i, first row r in that page (box divides page_size, so a box never
            // straddles pages).
            auto for_each_box = [&](auto&& f) {
              const int key0 = n * kBlockN;
              int i = key0 / attn.page_size, r = key0 - i * attn.page_size;
#pragma unroll 1
              for (int b = 0; b * box < kBlockN; ++b) {
                if (key0 + b * box > cap - box) {  // past the page table: the last mapped rows
                  i = attn.page_table_cols - 1;
                  r = attn.page_size - box;
                }
                f(b, b * box / kG, i, r);
                r += box;
                if (r == attn.page_size) {
                  r = 0;
                  ++i;
                }
              }
            };
            // The boxes' pages go to shared memory by cp.async before the stage's wait, so the
            // page-table reads overlap each other and the wait instead of each preceding its box.
            auto read_pages = [&] {
              for_each_box([&](int b, int, int i, int) {
                SM80_CP_ASYNC_CACHEALWAYS<int32_t>::copy(pt[i], ss.box_page[b]);
              });
              cp_async_fence();
            };
            auto load = [&](auto const& tma, auto const& mX, auto& sX, auto dim, uint64_t* bar) {
              constexpr int kDim = decltype(dim)::value;
              cp_async_wait<0>();
              for_each_box([&](int b, int g, int, int r) {
                Tensor gX = local_tile(mX(_, _, ss.box_page[b]), Shape<Int<kG>, Int<kDim>>{},
                                       make_coord(r / kG, _0{}));
                Tensor sXg = local_tile(sX(_, _, st.index()), Shape<Int<kG>, Int<kDim>>{},
                                        make_coord(g, _0{}));
                auto [tXg, tXs] = tma_partition(tma, _0{}, Layout<_1>{}, group_modes<0, 2>(sXg),
                                                group_modes<0, 2>(gX));
                copy(tma.with(*bar, 0), tXg, tXs);
              });
            };
            // V(n) follows K(n) and reuses its pages, unless K runs a block ahead (kKAhead).
            if (!is_v || Traits::kKAhead) read_pages();
            if (!is_v) {
              pipe_k.producer_acquire(st);
              load(p.tma_k_rows, mKr, sK, Int<kHeadDim>{}, pipe_k.producer_get_barrier(st));
            } else {
              pipe_v.producer_acquire(st);
              load(p.tma_v_rows, mVr, sV, Int<Traits::kHeadDimV>{}, pipe_v.producer_get_barrier(st));
            }
          } else {
            // Batched: tile n of batch entry `batch`. Paged: tile of the page holding key
            // n*kBlockN (page_size is a multiple of kBlockN here). Varlen: tile n of the
            // (total_k)-row view shifted by k_row0.
            int page = k_varlen ? 0 : batch, tile = n;
            if (attn.paged()) {
              const int key = n * kBlockN;
              page = attn.page_table[batch * attn.page_table_batch_stride + key / attn.page_size];
              tile = (key % attn.page_size) / kBlockN;
            }
            if (!is_v) {
              Tensor gK = local_tile(domain_offset(make_coord(k_row0, _0{}), mK(_, _, page)),
                                     Shape<Int<kBlockN>, Int<kHeadDim>>{}, make_coord(tile, _0{}));
              auto [tKg, tKs] = tma_partition(p.tma_k, _0{}, Layout<_1>{}, group_modes<0, 2>(sK),
                                              group_modes<0, 2>(gK));
              pipe_k.producer_acquire(st);
              copy(p.tma_k.with(*pipe_k.producer_get_barrier(st), 0), tKg, tKs(_, st.index()));
            } else {
              Tensor gV = local_tile(domain_offset(make_coord(k_row0, _0{}), mV(_, _, page)),
                                     Shape<Int<kBlockN>, Int<Traits::kHeadDimV>>{},
                                     make_coord(tile, _0{}));
              auto [tVg, tVs] = tma_partition(p.tma_v, _0{}, Layout<_1>{}, group_modes<0, 2>(sV),
                                              group_modes<0, 2>(gV));
              pipe_v.producer_acquire(st);
              copy(p.tma_v.with(*pipe_v.producer_get_barrier(st), 0), tVg, tVs(_, st.index()));
            }
          }
        };
        // kEarlyK: the tile's first K block goes out before the wait for sQ: its stage frees (S
        // GEMM done) before sQ does, so its latency runs under the previous tile's last softmax
        // and P V. (V's stage frees only after a P V, with two stages after the last S GEMM: V
        // waits until after Q.)
        const bool early_k = Traits::kEarlyK && has_work;
        if constexpr (Traits::kPrefetchQ) {
          if (has_work && leader && !Traits::kPackGQA) {
            auto [tQg, tQs] = q_tiles(w);
            prefetch(p.tma_q, tQg);
          }
        }
        if (early_k) load_kv(n_max - 1, false, wr);
        if constexpr (Traits::kAnnounce && !kAhead) {
          if (leader) announce(i_tile, t, w, has_work);
          if (!in_range) break;
        }
        if (!has_work) {
          if constexpr (kAhead) announce_next(i_tile, t);
          continue;
        }
        if constexpr (!Traits::kPersistent) {
          if (leader) load_q(w, 0);
        }
        const bool k_ahead = n_max - n_min <= Traits::kKAheadMaxBlocks;
        for (int n = n_max - 1; n >= n_min; --n) {
          if constexpr (Traits::kKAhead) {
            if (n == n_max - 1 || !k_ahead) {  // (else K(n) went out with V(n + 1))
              load_kv(n, false, wr_k);
              ++wr_k;
            }
            if (k_ahead && n > n_min) {
              load_kv(n - 1, false, wr_k);
              ++wr_k;
            }
          } else if (!(early_k && n == n_max - 1)) {
            load_kv(n, false, wr);
          }
          load_kv(n, true, wr);
          ++wr;
          if constexpr (kAhead) {
            if (n == n_max - 1) announce_next(i_tile, t);
          }
        }
      }
    }
    return;
  }

  // -------------------------------------------------------------------- consumers
  cutlass::arch::warpgroup_reg_alloc<Traits::kConsumerRegs>();
  const int ctid = threadIdx.x - 128;  // 0..255
  typename Traits::TiledMmaS mma_s;
  typename Traits::TiledMmaO mma_o;
  auto thr_s = mma_s.get_thread_slice(ctid);
  auto thr_o = mma_o.get_thread_slice(ctid);

  Tensor tSrQ = thr_s.partition_fragment_A(sQ);                 // descriptors (MMA, M, K, buffer)
  Tensor tSrK = thr_s.partition_fragment_B(sK);                 // (MMA, N, K, stage)
  Tensor tOrV = thr_o.partition_fragment_B(sVt);                // (MMA, N, K, stage)
  Tensor tOrO = partition_fragment_C(mma_o, select<0, 1>(typename Traits::TileShapeO{}));
  Tensor tOrO_rc = make_tensor(tOrO.data(), detail::acc_rowcol(tOrO.layout()));

  // Coordinates of the S accumulator (row within tile, col within block).
  Tensor cS = make_identity_tensor(Shape<Int<kBlockM>, Int<kBlockN>>{});
  Tensor tScS = thr_s.partition_C(cS);
  Tensor tScS_rc = make_tensor(tScS.data(), detail::acc_rowcol(tScS.layout()));

  ThreadSoftmax<Traits> softmax;
  const float scale_log2 = Traits::kHasSoftcap ? kLog2e : p.scale_log2;
  const bool has_sink = attn.learnable_sink != nullptr;
  const int wgc = wg - 1;  // consumer warpgroup 0, 1 (, 2)
  // Named barrier ids: 2, 3 the ping-pong turns; kBarWarpgroup + wgc one warpgroup's 128 threads;
  // kOInV: kBarVFree warpgroup 1's P V GEMMs are done with the V stage, kBarOSlab warpgroup 0's
  // store has read it.
  constexpr int kBarWarpgroup = 4;
  constexpr int kBarVFree = kBarWarpgroup + Traits::kNumConsumerWG;
  constexpr int kBarOSlab = kBarVFree + 1;
  // This warpgroup's O staging slab: its own buffer when persistent, else its sQ slab; kOInV: the
  // V stage v_stage, shared by the warpgroups in turn.
  auto o_slab = [&](int v_stage) {
    Element* slab = [&] {
      if constexpr (Traits::kOInV)
        return ss.v.data() + v_stage * (kBlockN * Traits::kHeadDimV) +
               (Traits::kOSlabPerWG ? wgc * cosize_v<typename Traits::SmemLayoutO> : 0);
      else if constexpr (Traits::kPersistent)
        return ss.o.data() + wgc * cosize_v<typename Traits::SmemLayoutO>;
      else return ss.q.data() + wgc * Traits::kSlabQ;
    }();
    return make_tensor(make_smem_ptr(slab), typename Traits::SmemLayoutO{});
  };
  auto thr_o_wg = typename Traits::TiledMmaOWG{}.get_thread_slice(ctid % 128);
  const bool store_thread = ctid % 128 == 0;  // issues and waits for this warpgroup's O stores
  PipelineState rd;  // consumer state starts at phase 0

  // Ping-pong turn taking, per tile: the two warpgroups alternate their GEMM phases (prologue S,
  // one per further key block, final P V) through named barriers 2 and 3. Warpgroup 0 starts
  // (warpgroup 1 pre-arrives once per tile) and warpgroup 1 skips its last arrive, so every
  // barrier generation completes. (One turn sequence over the whole walk, letting a warpgroup's
  // epilogue run under the other's GEMMs, measured -4 % at d = 128, 4k-16k, H200.)
  auto turn_wait = [&]() {
    if constexpr (Traits::kPingPong) cutlass::arch::NamedBarrier::sync(256, 2 + wgc);
  };
  auto turn_pass = [&](bool last = false) {
    if constexpr (Traits::kPingPong) {
      if (!(last && wgc == 1)) cutlass::arch::NamedBarrier::arrive(256, 2 + (1 - wgc));
    }
  };

  // Tile row (its index within the sequence's rows) -> query position and query head.
  const int pack_group = Traits::kPackGQA ? p.pack_group : 1;
  const bool split_kv = Traits::kPackGQA && p.num_splits > 1;
  auto query_pos = [&](int row) { return pack_group > 1 ? row / pack_group : row; };
  auto query_head = [&](const TileWork& w, int row) {
    return pack_group > 1 ? w.head + row % pack_group : w.head;
  };
  // Packed GQA: this warpgroup's 64 rows of tile w's Q into Q buffer qb (cp.async, 16-byte
  // chunks; the swizzle keeps them whole; rows past the sequence are zero-filled), then handed to
  // the async proxy that the S GEMM reads through.
  auto load_q_packed = [&](const TileWork& w, int qb) {
    if (!Traits::kPackGQA || pack_group == 1) return;
    constexpr int kChunks = kHeadDim / 8;
    Element const* q = static_cast<Element const*>(attn.q);
#pragma unroll 1
    for (int i = ctid % 128; i < 64 * kChunks; i += 128) {
      const int r = 64 * wgc + i / kChunks, c = (i % kChunks) * 8;
      const int row = w.row_begin + r;
      const bool valid = row < w.rows;
      Element const* src =
          valid ? q + attn.q_offset(w.batch, query_pos(row), query_head(w, row)) + c : q;
      SM80_CP_ASYNC_CACHEGLOBAL_ZFILL<uint128_t>::copy(
          *reinterpret_cast<uint128_t const*>(src), *reinterpret_cast<uint128_t*>(&sQ(r, c, qb)),
          valid);
    }
    cp_async_wait<0>();
    cutlass::arch::fence_view_async_shared();
    cutlass::arch::NamedBarrier::sync(128, kBarWarpgroup + wgc);
  };

  // Scales (softcap) and masks the raw accumulator of key block n of tile w.
  auto prepare_scores = [&](auto& tSrS, int n, const TileWork& w) {
    Tensor s = make_tensor(tSrS.data(), detail::acc_rowcol(tSrS.layout()));
    if constexpr (Traits::kHasSoftcap) {
      CUTE_UNROLL
      for (int i = 0; i < size(s); ++i)
        s(i) = apply_softcap(s(i) * attn.softmax_scale, attn.softcap);
    }
    // A key block needs element masking when it straddles seqlen_k or a window edge.
    const int c0 = n * kBlockN, c1 = c0 + kBlockN;  // [c0, c1)
    bool need_mask = c1 > w.k_len;
    if constexpr (Traits::kIsLocal) {
      const MaskSpec& mask = w.mask;
      int pos_first = w.row_begin, pos_last = w.row_begin + kBlockM - 1;
      if constexpr (Traits::kPackGQA) {
        pos_first = w.pos_first;
        pos_last = w.pos_last;
      }
      if (mask.window_right >= 0) need_mask |= c1 - 1 > mask.diagonal(pos_first) + mask.window_right;
      if (mask.window_left >= 0) need_mask |= c0 < mask.diagonal(pos_last) - mask.window_left;
    }
    if (need_mask) {
      // Per row, the visible columns [lo, hi) relative to this thread's first one. With a local
      // mask, as a bit mask over the thread's columns (fragment_cols_below); without one only the
      // seqlen_k tail is cut (lo = 0), one compare per element, which keeps the 112-register
      // four-warpgroup kernel free of spills where the bit masks' registers are not.
      constexpr int kCols = size<1>(decltype(s){});
      const int col_base = c0 + get<1>(tScS_rc(0, 0));
      CUTE_UNROLL
      for (int r = 0; r < size<0>(s); ++r) {
        int lo, hi;
        // (Without a local mask only the key tail matters, the same for every row.)
        const int row = w.row_begin + get<0>(tScS_rc(r, 0));
        w.mask.visible_cols(Traits::kIsLocal ? query_pos(row) : row, &lo, &hi);
        if constexpr (Traits::kIsLocal) {
          const uint32_t visible = fragment_cols_below<kCols>(hi - col_base) &
                                   ~fragment_cols_below<kCols>(lo - col_base);
          CUTE_UNROLL
          for (int c = 0; c < kCols; ++c) {
            if (!((visible >> c) & 1u)) s(r, c) = -INFINITY;
          }
        } else {
          CUTE_UNROLL
          for (int c = 0; c < kCols; ++c) {
            if (get<1>(tScS_rc(r, c)) - get<1>(tScS_rc(0, 0)) >= hi - col_base) s(r, c) = -INFINITY;
          }
        }
      }
    }
    return s;
  };
  // The gather kernel's K / V land by cp.async, writes of the generic proxy, and the GEMMs read
  // them through the async proxy: a proxy fence after each wait on a stage's barrier.
  auto wait_k = [&](PipelineState const& st) {
    pipe_k.consumer_wait(st);
    if constexpr (Traits::kGather) cutlass::arch::fence_view_async_shared();
  };
  auto wait_v = [&](PipelineState const& st) {
    pipe_v.consumer_wait(st);
    if constexpr (Traits::kGather) cutlass::arch::fence_view_async_shared();
  };
  // Key block n straddles k_len and the V rows past it were loaded from memory that may hold
  // anything (seqused_k / paged / the next sequence of varlen keys): P is 0 there, but 0 * NaN is
  // NaN inside the MMA, so clear them. Each warpgroup writes the same zeros before its own P V.
  auto clear_v_tail = [&](int n, int stage, int k_len) {
    if (!p.zero_v_tail || (n + 1) * kBlockN <= k_len) return;
    constexpr int kChunks = Traits::kHeadDimV / 8;  // 16-byte chunks per row (swizzle keeps them whole)
    const int r0 = k_len - n * kBlockN;
    for (int i = ctid % 128; i < (kBlockN - r0) * kChunks; i += 128) {
      const int r = r0 + i / kChunks, c = (i % kChunks) * 8;
      *reinterpret_cast<uint4*>(&sV(r, c, stage)) = make_uint4(0, 0, 0, 0);
    }
    cutlass::arch::fence_view_async_shared();
    cutlass::arch::NamedBarrier::sync(128, kBarWarpgroup + wgc);
  };
  auto rescale_o = [&](float const (&f)[2]) {
    // Conditional rescaling leaves f == 1 for almost every key block: skip the multiplies
    // whenever the whole warp can, where they are at least as many as the exponentials
    // (d_v >= kBlockN: +5-11 % at d = 256). With fewer (d = 64) the vote and branch cost more
    // than they save (-3-4 %, H200).
    if constexpr (Traits::kHeadDimV >= kBlockN) {
      if (!__any_sync(0xffffffffu, f[0] != 1.f || f[1] != 1.f)) return;
    }
    CUTE_UNROLL
    for (int r = 0; r < size<0>(tOrO_rc); ++r) {
      CUTE_UNROLL
      for (int c = 0; c < size<1>(tOrO_rc); ++c) tOrO_rc(r, c) *= f[r];
    }
  };
  Tensor cO = make_identity_tensor(select<0, 1>(typename Traits::TileShapeO{}));
  Tensor tOcO = thr_o.partition_C(cO);
  Tensor tOcO_rc = make_tensor(tOcO.data(), detail::acc_rowcol(tOcO.layout()));
  // Split-KV: the partial O / lse slot of tile w's row, and this warpgroup's rows of O (scaled
  // by 1 / its own sum) into o_partial from the accumulators (fp32; a decoding tile has only a
  // few rows, so no staging).
  auto partial_slot = [&](const TileWork& w, int row) -> int64_t {
    if constexpr (Traits::kPackGQA) {
      const int64_t seq_row0 =
          attn.q_varlen() ? attn.cu_seqlens_q[w.batch] : int64_t(w.batch) * attn.seqlen_q;
      return (int64_t(w.split) * attn.heads_q + query_head(w, row)) * p.partial_rows + seq_row0 +
             query_pos(row);
    } else {
      return 0;
    }
  };
  auto store_partial = [&](const TileWork& w) {
    CUTE_UNROLL
    for (int r = 0; r < size<0>(tOrO_rc); ++r) {
      const int row = w.row_begin + get<0>(tOcO_rc(r, 0));
      if (row >= w.rows) continue;
      float* dst = p.o_partial + partial_slot(w, row) * Traits::kHeadDimV;
      CUTE_UNROLL
      for (int c = 0; c < size<1>(tOrO_rc); c += 2) {  // column pairs (c, c + 1) are adjacent
        *reinterpret_cast<float2*>(dst + get<1>(tOcO_rc(r, c))) =
            make_float2(tOrO_rc(r, c), tOrO_rc(r, c + 1));
      }
    }
  };
  // Ends tile w's softmax: the output scales (1 / sum, with the sink) and the rows' lse, written
  // at once (one thread of each quad, its two rows) from the tile's own lse pointer (the
  // parameter reads of lse_offset cost ~500 cycles per tile here, H100 trace).
  auto finish_softmax = [&](const TileWork& w, float (&f)[2]) {
    float sink_log2[2];  // per row: a packed tile's rows belong to several heads
    if constexpr (Traits::kPackGQA) {
      CUTE_UNROLL
      for (int r = 0; r < 2; ++r) {
        const int row = w.row_begin + get<0>(tOcO_rc(r, 0));
        sink_log2[r] = has_sink ? attn.learnable_sink[query_head(w, row)] * kLog2e : 0.f;
      }
      if (split_kv) {  // each split's own softmax: the sink joins once, in combine_splits
        softmax.finalize(sink_log2, false, f);
        if ((lane % 4) == 0) {
          CUTE_UNROLL
          for (int r = 0; r < size<0>(tOcO_rc); ++r) {
            const int row = w.row_begin + get<0>(tOcO_rc(r, 0));
            if (row < w.rows) p.lse_partial[partial_slot(w, row)] = softmax.st[r].lse();
          }
        }
        return;
      }
    } else {
      sink_log2[0] = sink_log2[1] = has_sink ? attn.learnable_sink[w.head] * kLog2e : 0.f;
    }
    softmax.finalize(sink_log2, has_sink, f);
    if (w.lse != nullptr && (lane % 4) == 0) {
      CUTE_UNROLL
      for (int r = 0; r < size<0>(tOcO_rc); ++r) {
        const int row = w.row_begin + get<0>(tOcO_rc(r, 0));
        if (row < w.rows) {
          if constexpr (Traits::kPackGQA) {
            const int64_t head = query_head(w, row) - w.head;
            w.lse[head * attn.lse_head_stride + query_pos(row)] = softmax.st[r].lse();
          } else {
            w.lse[row] = softmax.st[r].lse();
          }
        }
      }
    }
  };
  // O of the tile being stored, normalised and converted.
  Tensor tOrOe = make_tensor_like<Element>(tOrO);
  // f(r, c, dst) for each 16-byte chunk (row r of this warpgroup's 64, column c) of tile w's rows
  // that this sequence owns, dst its place in out.
  auto for_each_owned_chunk = [&](const TileWork& w, auto&& f) {
    constexpr int kChunks = Traits::kHeadDimV / 8;
    Element* out = static_cast<Element*>(attn.out);
    const int slab_row = w.row_begin + 64 * wgc;
    const int rows = min(64, w.row_end - slab_row);
    for (int i = ctid % 128; i < rows * kChunks; i += 128) {
      const int r = i / kChunks, c = (i % kChunks) * 8;
      const int row = slab_row + r;
      f(r, c, reinterpret_cast<uint4*>(
                  out + attn.o_offset(w.batch, query_pos(row), query_head(w, row)) + c));
    }
  };
  // Epilogue of tile w (tOrOe holds its O): O through this warpgroup's slab to its own store
  // (named barrier of its 128 threads). Persistent: the slab is free once this warpgroup's
  // previous TMA store has read it. kOInV: the slab is V stage v_held (the tile's last key block,
  // not yet released): warpgroup 0 stages once warpgroup 1's last P V no longer reads it,
  // warpgroup 1 after warpgroup 0's store has read it, and each releases the stage once its own
  // store has.
  auto store_tile = [&](const TileWork& w, PipelineState v_held) {
    Tensor sO = o_slab(v_held.index());
    if constexpr (Traits::kOInV && Traits::kOSlabPerWG) {
      cutlass::arch::NamedBarrier::sync(256, kBarVFree);  // both warpgroups' P V are done
    } else if constexpr (Traits::kOInV) {
      if (wgc == 1) {
        cutlass::arch::NamedBarrier::arrive(256, kBarVFree);
        cutlass::arch::NamedBarrier::sync(256, kBarOSlab);
      } else {
        cutlass::arch::NamedBarrier::sync(256, kBarVFree);
      }
    } else if constexpr (Traits::kPersistent) {
      if (store_thread) tma_store_wait<0>();
      cutlass::arch::NamedBarrier::sync(128, kBarWarpgroup + wgc);
    }
    copy(tOrOe, thr_o_wg.partition_C(sO));
    // Only the TMA store reads sO through the async proxy.
    if (!p.store_o_predicated) cutlass::arch::fence_view_async_shared();
    cutlass::arch::NamedBarrier::sync(128, kBarWarpgroup + wgc);
    const int slab_row = w.row_begin + 64 * wgc;
    if (p.store_o_predicated) {
      for_each_owned_chunk(w, [&](int r, int c, uint4* dst) {
        *dst = *reinterpret_cast<uint4 const*>(&sO(r, c));
      });
    } else if (store_thread && slab_row < w.rows) {
      Tensor mO = p.tma_o.get_tma_tensor(p.layout_o.shape())(_, _, w.head, w.batch);
      Tensor gO = local_tile(mO, Shape<_64, Int<Traits::kHeadDimV>>{},
                             make_coord(w.m_block * Traits::kNumConsumerWG + wgc, _0{}));
      auto [tOg, tOs] = tma_partition(p.tma_o, _0{}, Layout<_1>{}, group_modes<0, 2>(sO),
                                      group_modes<0, 2>(gO));
      copy(p.tma_o, tOs, tOg);
      tma_store_arrive();
    }
    if constexpr (Traits::kOInV) {
      if (store_thread) tma_store_wait<0>();
      cutlass::arch::NamedBarrier::sync(128, kBarWarpgroup + wgc);
      if (!Traits::kOSlabPerWG && wgc == 0) cutlass::arch::NamedBarrier::arrive(256, kBarOSlab);
      pipe_v.consumer_release(v_held);
    }
  };
  // kOInV, a tile whose rows see no key (no V stage held): its O is 0, written directly.
  auto store_zero_tile = [&](const TileWork& w) {
    for_each_owned_chunk(w, [](int, int, uint4* dst) { *dst = make_uint4(0, 0, 0, 0); });
  };

  // kDeferEpilogue: the tile whose epilogue has not run yet (its O in tOrOe).
  bool pending = false;
  TileWork pending_w;
  auto flush_pending = [&] {
    if (pending) store_tile(pending_w, PipelineState{});
    pending = false;
  };
  // Ends tile w: O converted, then stored now or (kDeferEpilogue) after the next S GEMM's issue.
  // v_held: kOInV, the V stage of the tile's last key block (still held).
  auto end_tile = [&](const TileWork& w, bool defer, PipelineState v_held) {
    flush_pending();  // tOrOe is about to be overwritten
    detail::convert_frag(tOrO, tOrOe);
    if (Traits::kDeferEpilogue && defer) {
      pending = true;
      pending_w = w;
    } else {
      store_tile(w, v_held);
    }
  };

  int q_waits = 0;  // completions of barrier_q waited for
  for (int t = first_tile; Traits::kAnnounce || t < num_tiles; t += tile_step) {
    const int qb = q_waits % Traits::kQBuffers;  // this tile's Q buffer (and ss.tile slot)
    if constexpr (Traits::kAnnounce) {
      // The producer's next announcement (and its Q, if any).
      ss.barrier_q[qb].wait((q_waits++ / Traits::kQBuffers) & 1);
      t = ss.tile[qb].id;
      if (t >= num_tiles) break;
    }
    const TileWork w = [&] {
      if constexpr (Traits::kAnnounce) return ss.tile[qb].work;
      else return tile_work(t);
    }();
    if constexpr (Traits::kAnnounce) {
      // Tiles without work free their Q buffer and slot at once; the others after their last S
      // GEMM.
      if (!(w.row_begin < w.rows && w.n_max > w.n_min)) ss.barrier_q_free[qb].arrive();
    }
    if (w.row_begin >= w.rows) continue;  // no rows here (varlen / seqused q)
    const int n_min = w.n_min, n_max = w.n_max;
    if constexpr (Traits::kNumConsumerWG > 2) {
      // A warpgroup whose 64 rows all lie past the sequence's end (the last tile of a 192- or
      // 256-row split, e.g. rows 960-1151 of 1024) only keeps the pipelines moving: no GEMM,
      // softmax or store, so the warpgroups that have rows there do not share the SM with dead work.
      // (Warp-uniform through the shuffle: the other path holds the wgmma.)
      if (__shfl_sync(~0u, int(w.row_begin + 64 * wgc >= w.row_end), 0)) {
        if (n_max > n_min) {
          if constexpr (!Traits::kAnnounce) ss.barrier_q[0].wait(q_waits++ & 1);
          for (int n = n_max - 1; n >= n_min; --n) {
            pipe_k.consumer_wait(rd);
            pipe_k.consumer_release(rd);
            pipe_v.consumer_wait(rd);
            pipe_v.consumer_release(rd);
            ++rd;
          }
          if constexpr (Traits::kPersistent) ss.barrier_q_free[qb].arrive();
        }
        continue;
      }
    }
    // Persistent: the Q buffer (and its ss.tile) are free for a later tile once block n_min's S
    // GEMM is done.
    auto last_s_done = [&](int n) {
      if constexpr (Traits::kPersistent) {
        if (n == n_min) ss.barrier_q_free[qb].arrive();
      }
    };
    Tensor tSrQb = tSrQ(_, _, _, qb);
    float f[2];

    if constexpr (Traits::kOverlap) {
      if (n_max > n_min) {
        if constexpr (Traits::kPingPong) {
          if (wgc == 1) cutlass::arch::NamedBarrier::arrive(256, 2);
        }
        if constexpr (!Traits::kAnnounce) ss.barrier_q[0].wait(q_waits++ & 1);
        load_q_packed(w, qb);
        clear(tOrO);
        softmax.init();
        // Prologue: S of the first (highest) block, softmax, P.
        int n = n_max - 1;
        Tensor tSrS = partition_fragment_C(mma_s, select<0, 1>(typename Traits::TileShapeS{}));
        wait_k(rd);
        turn_wait();
        detail::wg_gemm<true, -1>(mma_s, tSrQb, tSrK(_, _, _, rd.index()), tSrS);
        turn_pass();
        flush_pending();  // the previous tile's epilogue, under this S GEMM
        warpgroup_wait<0>();
        warpgroup_fence_operand(tSrS);
        pipe_k.consumer_release(rd);
        last_s_done(n);
        {
          auto s = prepare_scores(tSrS, n, w);
          softmax.online(s, scale_log2, f);
        }
        Tensor tOrP = make_tensor_like<Element>(tSrS);
        detail::convert_frag(tSrS, tOrP);
        PipelineState rd_v = rd;
        int n_v = n;
        ++rd;
        for (n = n_max - 2; n >= n_min; --n) {
          Tensor tSrS2 = partition_fragment_C(mma_s, select<0, 1>(typename Traits::TileShapeS{}));
          wait_k(rd);
          wait_v(rd_v);
          clear_v_tail(n_v, rd_v.index(), w.k_len);
          turn_wait();
          detail::wg_gemm<true, -1>(mma_s, tSrQb, tSrK(_, _, _, rd.index()), tSrS2);
          Tensor tOrPa = make_tensor(tOrP.data(), detail::acc_as_a_operand(tOrP.layout()));
          detail::wg_gemm<false, -1>(mma_o, tOrPa, tOrV(_, _, _, rd_v.index()), tOrO);
          turn_pass();
          warpgroup_wait<1>();  // S done
          warpgroup_fence_operand(tSrS2);
          pipe_k.consumer_release(rd);
          last_s_done(n);
          {
            auto s = prepare_scores(tSrS2, n, w);
            softmax.online(s, scale_log2, f);
          }
          warpgroup_wait<0>();  // O done
          warpgroup_fence_operand(tOrO);
          pipe_v.consumer_release(rd_v);
          rescale_o(f);
          detail::convert_frag(tSrS2, tOrP);
          rd_v = rd;
          n_v = n;
          ++rd;
        }
        // Tail: the last P V.
        wait_v(rd_v);
        clear_v_tail(n_v, rd_v.index(), w.k_len);
        turn_wait();
        Tensor tOrPa = make_tensor(tOrP.data(), detail::acc_as_a_operand(tOrP.layout()));
        detail::wg_gemm<false, -1>(mma_o, tOrPa, tOrV(_, _, _, rd_v.index()), tOrO);
        turn_pass(true);
        finish_softmax(w, f);
        warpgroup_wait<0>();
        warpgroup_fence_operand(tOrO);
        if constexpr (!Traits::kOInV) pipe_v.consumer_release(rd_v);  // (kOInV: after O's store)
        rescale_o(f);
        if (split_kv) {
          store_partial(w);
          if constexpr (Traits::kOInV) pipe_v.consumer_release(rd_v);
          continue;
        }
        end_tile(w, true, rd_v);
        continue;
      }
    } else if (n_max > n_min) {
      if constexpr (!Traits::kAnnounce) ss.barrier_q[0].wait(q_waits++ & 1);
      load_q_packed(w, qb);
      PipelineState v_held;
      clear(tOrO);
      softmax.init();
      for (int n = n_max - 1; n >= n_min; --n) {
        Tensor tSrS = partition_fragment_C(mma_s, select<0, 1>(typename Traits::TileShapeS{}));
        wait_k(rd);
        detail::wg_gemm<true, 0>(mma_s, tSrQb, tSrK(_, _, _, rd.index()), tSrS);
        pipe_k.consumer_release(rd);
        last_s_done(n);
        {
          auto s = prepare_scores(tSrS, n, w);
          softmax.online(s, scale_log2, f);
        }
        rescale_o(f);
        Tensor tOrP1 = make_tensor_like<Element>(tSrS);
        detail::convert_frag(tSrS, tOrP1);
        Tensor tOrPa = make_tensor(tOrP1.data(), detail::acc_as_a_operand(tOrP1.layout()));
        wait_v(rd);
        clear_v_tail(n, rd.index(), w.k_len);
        detail::wg_gemm<false, 0>(mma_o, tOrPa, tOrV(_, _, _, rd.index()), tOrO);
        v_held = rd;
        if (!(Traits::kOInV && n == n_min)) pipe_v.consumer_release(rd);  // (kOInV: after O's store)
        ++rd;
      }
      finish_softmax(w, f);
      rescale_o(f);
      if (split_kv) {
        store_partial(w);
        if constexpr (Traits::kOInV) pipe_v.consumer_release(v_held);
        continue;
      }
      end_tile(w, false, v_held);
      continue;
    }
    // No key visible to these rows (k_len = 0, or a window beyond the keys): O = 0 (or all
    // weight on the sink), lse -inf (or the sink's).
    clear(tOrO);
    softmax.init();
    finish_softmax(w, f);
    if (split_kv) {  // O 0, lse -inf: this split saw none of the rows' keys
      store_partial(w);
      continue;
    }
    if constexpr (Traits::kOInV) {
      store_zero_tile(w);
      continue;
    }
    rescale_o(f);
    end_tile(w, false, rd);
  }
  flush_pending();
  // The last store must have read sO before the CTA's shared memory goes away.
  if (store_thread) tma_store_wait<0>();
#endif
}

}  // namespace fa4::sm90
