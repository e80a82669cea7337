// Everything a forward or backward kernel needs, resolved from the op's tensors by the launch layer.
// Arch-neutral: the CPU kernel and the sm90 / sm100 kernels take the same structs.
//
// Strides are in elements. Sequence lengths per batch entry b:
//   q:  cu_seqlens_q ? cu_seqlens_q[b+1] - cu_seqlens_q[b] : seqlen_q;  seqused_q[b] overrides.
//   kv: page_table   ? (seqused_k ? seqused_k[b] : page_table_cols * page_size)
//       cu_seqlens_k ? cu_seqlens_k[b+1] - cu_seqlens_k[b] : seqlen_k;   seqused_k[b] overrides.
// Row r of sequence b starts at (cu_seqlens ? (cu_seqlens[b] + r) * row_stride
//                                          : b * batch_stride + r * row_stride).
// Paged KV: key r of batch b lives in page page_table[b * page_table_batch_stride + r / page_size],
// row r % page_size; k/v's batch_stride is then the page stride.
#pragma once

#include <stdint.h>

#include "macros.h"

namespace fa4 {

enum class DType : int { kFloat16 = 0, kBFloat16 = 1, kFloat32 = 2, kFloat64 = 3 };

struct AttnParams {
  DType dtype;
  int batch;
  int heads_q, heads_kv;        // heads_q % heads_kv == 0
  int head_dim, head_dim_v;     // d for q/k, d_v for v/out
  int seqlen_q, seqlen_k;       // padded (batched) lengths, or max_seqlen_q/k when varlen
  int total_q;                  // rows of q (and of lse per head) when q is varlen
  int total_k;                  // rows of k/v when k is varlen (cu_seqlens_k)

  const int32_t* cu_seqlens_q;  // (batch + 1) or null
  const int32_t* cu_seqlens_k;  // (batch + 1) or null
  const int32_t* seqused_q;     // (batch) or null
  const int32_t* seqused_k;     // (batch) or null

  const int32_t* page_table;    // (batch, page_table_cols) or null
  int64_t page_table_batch_stride;
  int page_table_cols;
  int page_size;
  int num_pages;

  const float* learnable_sink;  // (heads_q) float32 or null; logit in softmax-scaled units

  float softmax_scale;
  float softcap;                // 0: off
  bool causal;
  int window_left, window_right;  // -1: unbounded
  int num_splits;               // 0: let the kernel decide
  // GQA / MQA forward: 1 packs the query heads that share a K/V head into the rows of one tile,
  // 0 keeps one head per tile, -1 lets the kernel decide. The result is the same either way.
  int pack_gqa;

  // q, k, v, out
  const void* q; const void* k; const void* v; void* out;
  int64_t q_batch_stride, q_row_stride, q_head_stride;
  int64_t k_batch_stride, k_row_stride, k_head_stride;
  int64_t v_batch_stride, v_row_stride, v_head_stride;
  int64_t o_batch_stride, o_row_stride, o_head_stride;
  // lse, float32, natural log: (batch, heads_q, seqlen_q) or (heads_q, total_q) when q is varlen.
  float* lse;
  int64_t lse_batch_stride, lse_head_stride;  // row stride is 1

  FA4_HOST_DEVICE bool q_varlen() const { return cu_seqlens_q != nullptr; }
  FA4_HOST_DEVICE bool paged() const { return page_table != nullptr; }

  FA4_HOST_DEVICE int q_len(int b) const {
    if (seqused_q) return seqused_q[b];
    return cu_seqlens_q ? cu_seqlens_q[b + 1] - cu_seqlens_q[b] : seqlen_q;
  }
  FA4_HOST_DEVICE int k_len(int b) const {
    if (seqused_k) return seqused_k[b];
    if (page_table) return page_table_cols * page_size;
    return cu_seqlens_k ? cu_seqlens_k[b + 1] - cu_seqlens_k[b] : seqlen_k;
  }
  // Element offset of (batch b, row r, head h) in a tensor whose rows are packed by `cu_seqlens`
  // when it is given, batched otherwise.
  static FA4_HOST_DEVICE int64_t row_offset(const int32_t* cu_seqlens, int b, int r, int h,
                                            int64_t batch_stride, int64_t row_stride,
                                            int64_t head_stride) {
    return (cu_seqlens ? (int64_t)(cu_seqlens[b] + r) * row_stride
                       : (int64_t)b * batch_stride + (int64_t)r * row_stride) +
           (int64_t)h * head_stride;
  }
  FA4_HOST_DEVICE int64_t q_offset(int b, int r, int h) const {
    return row_offset(cu_seqlens_q, b, r, h, q_batch_stride, q_row_stride, q_head_stride);
  }
  FA4_HOST_DEVICE int64_t o_offset(int b, int r, int h) const {
    return row_offset(cu_seqlens_q, b, r, h, o_batch_stride, o_row_stride, o_head_stride);
  }
  // k and v share the row addressing (same cu_seqlens_k / page table), not the strides.
  FA4_HOST_DEVICE int64_t kv_offset(int b, int r, int h, int64_t batch_stride, int64_t row_stride,
                                    int64_t head_stride) const {
    if (page_table) {
      const int page = page_table[b * page_table_batch_stride + r / page_size];
      return (int64_t)page * batch_stride + (int64_t)(r % page_size) * row_stride +
             (int64_t)h * head_stride;
    }
    return row_offset(cu_seqlens_k, b, r, h, batch_stride, row_stride, head_stride);
  }
  FA4_HOST_DEVICE int64_t k_offset(int b, int r, int h) const {
    return kv_offset(b, r, h, k_batch_stride, k_row_stride, k_head_stride);
  }
  FA4_HOST_DEVICE int64_t v_offset(int b, int r, int h) const {
    return kv_offset(b, r, h, v_batch_stride, v_row_stride, v_head_stride);
  }
  FA4_HOST_DEVICE int64_t lse_offset(int b, int r, int h) const {
    return cu_seqlens_q ? (int64_t)h * lse_head_stride + cu_seqlens_q[b] + r
                        : (int64_t)b * lse_batch_stride + (int64_t)h * lse_head_stride + r;
  }
};

// The backward adds dout and the gradients; q/k/v/out/lse addressing comes from AttnParams.
struct AttnBwdParams : AttnParams {
  const void* dout;
  int64_t do_batch_stride, do_row_stride, do_head_stride;
  void* dq; void* dk; void* dv;
  int64_t dq_batch_stride, dq_row_stride, dq_head_stride;
  int64_t dk_batch_stride, dk_row_stride, dk_head_stride;
  int64_t dv_batch_stride, dv_row_stride, dv_head_stride;
  float* dsink;                 // (heads_q) float32 or null
  // Gradient of lse (same shape and strides as lse) or null. It adds dlse_i * P_ij to dS_ij, i.e.
  // it is folded in as D_i <- D_i - dlse_i.
  const float* dlse;
  bool deterministic;

  FA4_HOST_DEVICE int64_t do_offset(int b, int r, int h) const {
    return row_offset(cu_seqlens_q, b, r, h, do_batch_stride, do_row_stride, do_head_stride);
  }
  FA4_HOST_DEVICE int64_t dq_offset(int b, int r, int h) const {
    return row_offset(cu_seqlens_q, b, r, h, dq_batch_stride, dq_row_stride, dq_head_stride);
  }
  // dk/dv follow k/v's layout; paged KV has no backward.
  FA4_HOST_DEVICE int64_t dk_offset(int b, int r, int h) const {
    return row_offset(cu_seqlens_k, b, r, h, dk_batch_stride, dk_row_stride, dk_head_stride);
  }
  FA4_HOST_DEVICE int64_t dv_offset(int b, int r, int h) const {
    return row_offset(cu_seqlens_k, b, r, h, dv_batch_stride, dv_row_stride, dv_head_stride);
  }
};

}  // namespace fa4
