// Mask predicates shared by the CPU reference kernel and the GPU kernels.
//
// Convention (flash-attn >= 2.1): causal and sliding windows are aligned to the bottom-right corner
// of the (seqlen_q x seqlen_k) score matrix, so query row i sits on key column
// diag(i) = i + seqlen_k - seqlen_q. A window is [diag - left, diag + right]; -1 means unbounded.
// Causal is the window (left, 0).
#pragma once

#include <stdint.h>

#include "macros.h"

namespace fa4 {

struct MaskSpec {
  int seqlen_q;
  int seqlen_k;
  int window_left;   // -1: unbounded
  int window_right;  // -1: unbounded; causal is 0

  FA4_HOST_DEVICE int diagonal(int row) const { return row + seqlen_k - seqlen_q; }

  // Key columns [*col_lo, *col_hi) that query row `row` sees (empty when col_lo >= col_hi). The
  // kernels compare each element's column against these two per-row bounds (two compares and a
  // select), rather than re-deriving the window per element.
  FA4_HOST_DEVICE void visible_cols(int row, int* col_lo, int* col_hi) const {
    const int diag = diagonal(row);
    int lo = 0, hi = seqlen_k;
    if (window_left >= 0 && diag - window_left > lo) lo = diag - window_left;
    if (window_right >= 0 && diag + window_right + 1 < hi) hi = diag + window_right + 1;
    *col_lo = lo;
    *col_hi = hi;
  }

  FA4_HOST_DEVICE bool visible(int row, int col) const {
    int lo, hi;
    visible_cols(row, &lo, &hi);
    return col >= lo && col < hi;
  }

  // Key columns [*col_begin, *col_end) that any row of [row_begin, row_end) can see: the loop bounds
  // that let a kernel skip fully masked key blocks. Empty (begin >= end) when no row sees a key.
  FA4_HOST_DEVICE void key_range(int row_begin, int row_end, int* col_begin, int* col_end) const {
    int lo = 0, hi = seqlen_k;
    if (window_left >= 0) {
      const int l = diagonal(row_begin) - window_left;
      lo = l > 0 ? l : 0;
    }
    if (window_right >= 0) {
      const int h = diagonal(row_end - 1) + window_right + 1;
      hi = h < seqlen_k ? h : seqlen_k;
    }
    *col_begin = lo;
    *col_end = hi;
  }

  // The transpose of key_range: query rows [*row_begin, *row_end) that see at least one key of
  // [col_begin, col_end) (the backward's loop over query blocks of one key block). Empty when none.
  FA4_HOST_DEVICE void query_range(int col_begin, int col_end, int* row_begin, int* row_end) const {
    if (col_end > seqlen_k) col_end = seqlen_k;
    int lo = 0, hi = col_begin < col_end ? seqlen_q : 0;
    const int shift = seqlen_k - seqlen_q;  // diagonal(row) = row + shift
    if (window_right >= 0) {  // col <= row + shift + right  <=>  row >= col - shift - right
      const int l = col_begin - shift - window_right;
      lo = l > 0 ? l : 0;
    }
    if (window_left >= 0) {  // col >= row + shift - left  <=>  row <= col - shift + left
      const int h = col_end - 1 - shift + window_left + 1;
      hi = h < hi ? h : hi;
    }
    *row_begin = lo;
    *row_end = hi;
  }
};

// Which of a thread's accumulator columns lie below a bound x (relative to its first column):
// bit c set iff column c's offset, 8 * (c / 2) + c % 2 (mma / wgmma accumulator fragments hold
// pairs of adjacent columns, 8 apart), is < x. The offsets grow with c, so the set is a prefix;
// a kernel masks the columns in [lo, hi) as below(hi) & ~below(lo) and tests one bit per element
// (ptxas turns that into R2P, seven predicates per instruction, instead of integer compares).
template <int kCols>
FA4_HOST_DEVICE uint32_t fragment_cols_below(int x) {
  static_assert(kCols % 2 == 0 && kCols <= 32, "pairs of columns, one 32-bit mask");
  constexpr int kPairs = kCols / 2;
  // Column 2i is below x iff 8i < x, i.e. i < ceil(x / 8); column 2i + 1 iff 8i + 1 < x.
  int evens = (x + 7) >> 3, odds = (x + 6) >> 3;  // arithmetic shifts: floor for negative x
  evens = evens < 0 ? 0 : (evens > kPairs ? kPairs : evens);
  odds = odds < 0 ? 0 : (odds > kPairs ? kPairs : odds);
  const int count = evens + odds;
  return count >= 32 ? ~0u : (1u << count) - 1u;
}

// Causal folds into the window: it is the window (left, 0).
FA4_HOST_DEVICE MaskSpec make_mask(int seqlen_q, int seqlen_k, bool causal, int window_left,
                                   int window_right) {
  return MaskSpec{seqlen_q, seqlen_k, window_left, causal ? 0 : window_right};
}

}  // namespace fa4
