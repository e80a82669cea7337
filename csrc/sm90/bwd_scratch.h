// Scratch of the sm90 backward (one workspace allocation; the preprocess zeroes dq_accum and the
// semaphores of every row it covers, and writes lse_log2 / dpsum):
//   dq_accum  float (heads_q, rows_per_head, head_dim): dQ summed over key blocks, before scaling;
//             row r's 8-float chunks are permuted (dq_accum_col) so that the kernel's smem staging
//             of a dQ block, which the bulk reduce-add copies byte for byte, is free of bank conflicts
//   lse_log2  float (heads_q, rows_per_head): lse * log2(e); +inf for rows that see no key and for
//             padding rows, so that P = exp2(s - lse_log2) = 0 there
//   dpsum     float (heads_q, rows_per_head): D = rowsum(dO * O) - dlse; 0 for padding rows
//   semaphore int32 (batch, heads_q, m_blocks): deterministic mode, key blocks done per query block
// Each sequence's rows start at a multiple of kAlignRows inside a head's rows, so every query
// block of the main kernel reads its lse_log2 / dpsum slice with one aligned bulk copy and never
// touches another sequence's rows. Varlen q: sequence b starts at
// (cu_seqlens_q[b] + b * kAlignRows) rounded down to kAlignRows, which is past the end of sequence
// b - 1 rounded up to kAlignRows.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/macros.h"
#include "common/params.h"

namespace fa4::sm90 {

struct BwdScratch {
  static constexpr int kAlignRows = 128;  // >= and a multiple of every kBlockM

  float* dq_accum;
  float* lse_log2;
  float* dpsum;
  int32_t* semaphore;
  int64_t rows_per_head;
  int seqlen_q_rounded;  // batched q: rows per sequence
  int m_blocks;          // semaphore slots per (batch, head)

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

  // Where column `col` of row `row` (relative to any multiple of 4 rows) sits in dq_accum. A warp's
  // accumulator-fragment store covers 8 consecutive rows x one 32-byte chunk; rows are head_dim * 4
  // bytes apart, a multiple of 128 for every head_dim % 32 == 0, so unpermuted all 8 rows hit the
  // same 8 banks (8 wavefronts). XOR-ing the chunk index with row % 4 spreads them over the 4 chunks
  // of a 128-byte line: 2 wavefronts, the minimum for 256 bytes. Chunks move only inside their
  // aligned group of 4, so any 4-float aligned vector stays contiguous.
  static FA4_HOST_DEVICE int dq_accum_col(int row, int col) { return col ^ ((row & 3) << 3); }
};

}  // namespace fa4::sm90
