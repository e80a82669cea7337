// Scratch of the sm90 backward (one workspace allocation; the preprocess zeroes the semaphores and
// claims of every row it covers, and writes lse_log2 / dpsum; dq_accum is written by the main
// kernel, first by a store in each query block):
//   dq_accum  float (heads_q, rows_per_head, head_dim): dQ summed over key blocks, before scaling,
//             in blocks of the main kernel's kBlockM rows (kBlockM * head_dim floats each), which
//             its bulk reduce-adds copy byte for byte from the shared-memory staging:
//             - dq_wg_cols == 0: row-major, row r's 8-float chunks permuted (dq_accum_col) so that
//               the staging is free of bank conflicts;
//             - dq_wg_cols == N > 0 (kBlockM = 64, the warpgroups split dQ along the columns and
//               hand their halves over separately): one chunk of 64 x N floats per warpgroup (its
//               columns w N .. w N + N - 1), each in its accumulator-fragment order
//               (dq_frag_index), so that a warpgroup stages its half with 16-byte stores from one
//               base address
//   lse_log2  float (heads_q, rows_per_head): lse * log2(e); +inf for rows that see no key and for
//             padding rows, so that P = exp2(s - lse_log2) = 0 there
//   dpsum     float (heads_q, rows_per_head): D = rowsum(dO * O) - dlse; 0 for padding rows
//   semaphore int32 (batch, heads_q, m_blocks): deterministic mode, key blocks done per query
//             block; otherwise 1 once the block's first claimer has stored its dQ partial
//   dq_claim  int32 (batch, heads_q, m_blocks): key blocks that claimed each query block (the first
//             stores into the unzeroed dq_accum, the others add after it)
//   dq_done   int32 (batch, heads_q): key-block CTAs whose dQ additions into the head's rows have
//             completed (the dQ convert of a head starts once all of them have, possibly while
//             the main kernel's last CTAs still run: bwd_api.cu)
//   dk_partial, dv_partial  float (heads_kv, head_splits, key_rows, head_dim / head_dim_v), only
//             when head_splits > 1: a GQA group's query heads are split over head_splits CTAs
//             per (key block, kv head) (few kv heads leave SMs idle otherwise), heads_per_split
//             each; a CTA writes its dK (already times softmax_scale) / dV sums to its slice
//             (kv head * head_splits + split), and bwd_reduce_dkv adds the splits in a fixed
//             order (deterministic in both modes).
// Each sequence's rows start at a multiple of kAlignRows inside a head's rows, so every query
// block of the main kernel reads its lse_log2 / dpsum slice with one aligned bulk copy and never
// touches another sequence's rows. Varlen q: sequence b starts at
// (cu_seqlens_q[b] + b * kAlignRows) rounded down to kAlignRows, which is past the end of sequence
// b - 1 rounded up to kAlignRows.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/macros.h"
#include "common/mask.h"
#include "common/params.h"

namespace fa4::sm90 {

// The query rows [*row_lo, *row_hi) of a sequence that see some key of the block
// [n0, n0 + block_n), or false when there are none (no key of the block below k_len, or the mask
// hides the block from every query). The main kernel skips such a key block (its CTA returns), and
// the dQ convert counts only the others among the key blocks it waits for (bwd_api.cu): one
// definition, so the two cannot disagree (a count too high would hang the convert). `local`: the
// mask has a causal / window part (has_local_mask); without one every row sees the block.
FA4_HOST_DEVICE bool key_block_rows(const MaskSpec& mask, int q_len, int k_len, int n0,
                                    int block_n, bool local, int* row_lo, int* row_hi) {
  if (n0 >= k_len) return false;
  *row_lo = 0;
  *row_hi = q_len;
  if (local) mask.query_range(n0, n0 + block_n, row_lo, row_hi);
  return *row_lo < *row_hi;
}

// Whether any key block of the main kernel visits query block m (rows [m * block_m, ...)) of a
// sequence, i.e. writes its dq_accum rows (which nobody zeroes): else the dQ convert writes zeros.
// `local`: the mask has a causal / window part (has_local_mask).
FA4_HOST_DEVICE bool dq_block_visited(const MaskSpec& mask, int q_len, int k_len, int m,
                                      int block_m, bool local) {
  const int row0 = m * block_m;
  if (k_len <= 0 || row0 >= q_len) return false;
  if (!local) return true;
  int col_lo, col_hi;
  mask.key_range(row0, row0 + block_m < q_len ? row0 + block_m : q_len, &col_lo, &col_hi);
  return col_lo < col_hi;
}

struct BwdScratch {
  static constexpr int kAlignRows = 128;  // >= and a multiple of every kBlockM

  float* dq_accum;
  float* lse_log2;
  float* dpsum;
  int32_t* semaphore;
  int32_t* dq_done;
  int32_t* dq_claim;     // (batch, heads_q, m_blocks): key blocks that claimed each query block
  int64_t rows_per_head;
  int seqlen_q_rounded;  // batched q: rows per sequence
  int m_blocks;          // semaphore slots per (batch, head)
  int dq_wg_cols;        // dq_accum's block layout: 0 = rows, else columns per warpgroup chunk
  int head_splits;       // CTAs per (key block, kv head), each a share of the group's query heads
  int heads_per_split;   // heads_q / heads_kv / head_splits
  float* dk_partial;     // head_splits > 1 only
  float* dv_partial;
  int64_t key_rows;      // rows of a (split, kv head) slice of dk_partial / dv_partial
  // The preprocess zeroes dq_accum and every key block adds into it (the d 128 ping-pong kernel
  // without a local mask, or FA4_BWD_ZERO_DQ_ACCUM=1; run_bwd); else nobody zeroes it and each
  // query block's first claimer stores (bwd_kernel.h).
  bool dq_zeroed;
  // Launch, not memory: the main kernel is a programmatic dependent launch of the preprocess
  // (its setup and K / V loads overlap the preprocess's end; bwd_api.cu).
  bool pdl_main;

  static int64_t rows_per_head_of(const AttnParams& a) {
    auto round_up = [](int64_t x) { return (x + kAlignRows - 1) / kAlignRows * kAlignRows; };
    return a.q_varlen() ? round_up(int64_t(a.total_q) + int64_t(kAlignRows) * a.batch)
                        : int64_t(a.batch) * round_up(a.seqlen_q);
  }

  // First scratch row of sequence b within a head.
  FA4_HOST_DEVICE int64_t row0(const AttnParams& a, int b) const {
    return a.q_varlen()
               ? (int64_t(a.cu_seqlens_q[b]) + int64_t(b) * kAlignRows) / kAlignRows * kAlignRows
               : int64_t(b) * seqlen_q_rounded;
  }
  FA4_HOST_DEVICE int64_t row_index(const AttnParams& a, int b, int h, int row) const {
    return int64_t(h) * rows_per_head + row0(a, b) + row;
  }

  // Row of key `row` of sequence b in dk_partial / dv_partial, in slice `slice` (kv head *
  // head_splits + split).
  FA4_HOST_DEVICE int64_t partial_row(const AttnParams& a, int b, int row, int slice) const {
    const int64_t key = a.cu_seqlens_k != nullptr ? int64_t(a.cu_seqlens_k[b]) : int64_t(b) * a.seqlen_k;
    return int64_t(slice) * key_rows + key + row;
  }

  // Where column `col` of row `row` (relative to any multiple of 4 rows) sits in dq_accum. A warp's
  // accumulator-fragment store covers 8 consecutive rows x one 32-byte chunk; rows are head_dim * 4
  // bytes apart, a multiple of 128 for every head_dim % 32 == 0, so unpermuted all 8 rows hit the
  // same 8 banks (8 wavefronts). XOR-ing the chunk index with row % 4 spreads them over the 4 chunks
  // of a 128-byte line: 2 wavefronts, the minimum for 256 bytes. Chunks move only inside their
  // aligned group of 4, so any 4-float aligned vector stays contiguous.
  static FA4_HOST_DEVICE int dq_accum_col(int row, int col) { return col ^ ((row & 3) << 3); }

  // Index in a warpgroup's 64 x N chunk of the fp32 value a wgmma m64nNk16 accumulator holds at
  // (row, col): thread t of the warpgroup holds value i at row 16 * (t / 32) + (t % 32) / 4 +
  // 8 * (i / 2 % 2), column 8 * (i / 4) + 2 * (t % 4) + i % 2 (the PTX ISA's register fragment of
  // wgmma's D); the chunk stores value i of thread t at (i / 4) * 512 + 4 * t + i % 4, so thread t
  // writes its values 4 at a time at 16-byte steps of 2 KiB, conflict-free across the warp.
  static FA4_HOST_DEVICE int dq_frag_index(int row, int col) {
    const int t = 32 * (row / 16) + 4 * (row % 8) + (col % 8) / 2;
    const int i = 4 * (col / 8) + 2 * (row % 16 / 8) + col % 2;
    return (i / 4) * 512 + 4 * t + i % 4;
  }
  // dq_wg_cols of the main kernel with kBlockM = block_m: with 128 rows its warpgroups split dQ
  // along the rows; with 64 they split the head dimension, and the ping-pong kernel hands each
  // warpgroup's half over separately, in fragment order.
  static constexpr FA4_HOST_DEVICE int dq_wg_cols_for(int head_dim, int block_m, bool ping_pong) {
    return block_m == 64 && ping_pong ? head_dim / 2 : 0;
  }
};

}  // namespace fa4::sm90
