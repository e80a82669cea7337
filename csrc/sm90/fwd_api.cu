// fwd_unsupported_reason / run_fwd: validation and (dtype, head_dim) dispatch of the sm90 forward.
#include <stdint.h>

#include "sm90/fwd_dispatch.h"
#include "sm90/fwd_launch.h"
#include "sm90/gmem_layout.h"
#include "sm90/variant_dispatch.h"

namespace fa4::sm90 {

namespace {

// Rows the attention kernel does not own (past seqused_q, or past cu_seqlens_q[batch] in a varlen
// q) are, by contract, rows that see no key: out = 0, lse = -inf. Their extent lives in device
// memory, so they are cleared on the device before the kernel writes the rows it owns.
template <typename T>
__global__ void clear_rows(AttnParams a) {
  const int row = blockIdx.x, head = blockIdx.y, batch = blockIdx.z;
  const int64_t o = AttnParams::row_offset(nullptr, batch, row, head, a.o_batch_stride,
                                           a.o_row_stride, a.o_head_stride);
  T* out = static_cast<T*>(a.out) + o;
  for (int c = threadIdx.x; c < a.head_dim_v; c += blockDim.x) out[c] = T(0);
  if (threadIdx.x == 0 && a.lse != nullptr) {
    const int64_t l = a.q_varlen() ? (int64_t)head * a.lse_head_stride + row
                                   : (int64_t)batch * a.lse_batch_stride +
                                         (int64_t)head * a.lse_head_stride + row;
    a.lse[l] = -INFINITY;
  }
}

cudaError_t clear_unowned_rows(const AttnParams& a, cudaStream_t stream) {
  if (!a.q_varlen() && !a.seqused_q) return cudaSuccess;
  const int rows = a.q_varlen() ? a.total_q : a.seqlen_q;
  const int batches = a.q_varlen() ? 1 : a.batch;
  if (rows == 0 || batches == 0) return cudaSuccess;
  const dim3 grid(rows, a.heads_q, batches);
  if (a.dtype == DType::kBFloat16)
    clear_rows<cutlass::bfloat16_t><<<grid, 64, 0, stream>>>(a);
  else
    clear_rows<cutlass::half_t><<<grid, 64, 0, stream>>>(a);
  return cudaGetLastError();
}

// Split-KV: merges the splits' partial O (each normalised by its own sum) and lse of one (query
// position, head, batch) into out and lse, adding the sink here (once) when there is one. A row
// whose splits saw nothing gets O = 0 and lse -inf (or the sink's logit).
template <typename T>
__global__ void combine_splits(AttnParams a, const float* o_partial, const float* lse_partial,
                               int splits) {
  const int pos = blockIdx.x, head = blockIdx.y, batch = blockIdx.z;
  if (pos >= a.q_len(batch)) return;  // rows past the sequence are not this call's (cleared)
  const int64_t rows = fwd_partial_rows(a);
  const int64_t row = (a.q_varlen() ? a.cu_seqlens_q[batch] : int64_t(batch) * a.seqlen_q) + pos;
  auto slot = [&](int s) { return (int64_t(s) * a.heads_q + head) * rows + row; };
  const float sink = a.learnable_sink != nullptr ? a.learnable_sink[head] : -INFINITY;
  float m = sink;
  for (int s = 0; s < splits; ++s) m = fmaxf(m, lse_partial[slot(s)]);
  float lse = -INFINITY;
  if (m != -INFINITY) {
    float denom = expf(sink - m);
    for (int s = 0; s < splits; ++s) denom += expf(lse_partial[slot(s)] - m);
    lse = m + logf(denom);
  }
  T* out = static_cast<T*>(a.out) + a.o_offset(batch, pos, head);
  for (int c = threadIdx.x; c < a.head_dim_v; c += blockDim.x) {
    float acc = 0.f;
    if (lse != -INFINITY) {
      for (int s = 0; s < splits; ++s) {
        const float l = lse_partial[slot(s)];
        if (l != -INFINITY) acc += expf(l - lse) * o_partial[slot(s) * a.head_dim_v + c];
      }
    }
    out[c] = T(acc);
  }
  if (threadIdx.x == 0 && a.lse != nullptr) a.lse[a.lse_offset(batch, pos, head)] = lse;
}

cudaError_t combine(const AttnParams& a, const void* workspace, int splits, cudaStream_t stream) {
  const float* o_partial = reinterpret_cast<const float*>(
      static_cast<const char*>(workspace) + kFwdCounterBytes);
  const float* lse_partial = o_partial + int64_t(splits) * a.heads_q * fwd_partial_rows(a) * a.head_dim_v;
  const dim3 grid(a.seqlen_q, a.heads_q, a.batch);
  if (a.dtype == DType::kBFloat16)
    combine_splits<cutlass::bfloat16_t><<<grid, 128, 0, stream>>>(a, o_partial, lse_partial, splits);
  else
    combine_splits<cutlass::half_t><<<grid, 128, 0, stream>>>(a, o_partial, lse_partial, splits);
  return cudaGetLastError();
}

}  // namespace

const char* fwd_unsupported_reason(const AttnParams& a) {
  if (a.dtype != DType::kFloat16 && a.dtype != DType::kBFloat16)
    return "supports only float16 and bfloat16";
  bool built = false;
#define FA4_SM90_BUILT(D, DV, BN, ST, OVL, PP, LWG, SWG, SBN) \
  built |= a.head_dim == D && a.head_dim_v == DV;
  FA4_SM90_FWD_HDIM_TABLE(FA4_SM90_BUILT)
#undef FA4_SM90_BUILT
  if (!built)
    return "this (head_dim, head_dim_v) is not built (d = d_v in 64, 96, 128, 192, 256, and "
           "192 / 128 are)";
  // Varlen keys (cu_seqlens_k without a page table): K/V are one (total_k)-row sequence.
  const bool k_varlen = a.cu_seqlens_k != nullptr && !a.paged();
  if (k_varlen && a.total_k < 0) return "varlen keys need total_k >= 0";
  // Paged KV: any page size (whole-tile TMA boxes, 8-row boxes or 16-byte row chunks, see
  // fwd_launch_template.h).
  if (a.paged() && (a.page_size <= 0 || a.num_pages <= 0 || a.page_table_cols < 0))
    return "paged KV needs page_size > 0 and num_pages > 0";
  if (a.heads_kv <= 0 || a.heads_q % a.heads_kv != 0) return "heads_q must be a multiple of heads_kv";
  if (a.batch > 65535 || a.heads_q > 65535) return "batch and heads must be <= 65535";
  if (a.pack_gqa == 1 && a.heads_q > a.heads_kv && a.heads_kv > 0 &&
      int64_t(a.heads_q / a.heads_kv) * a.seqlen_q > kMaxPackedRows)
    return "pack_gqa=True needs seqlen_q * (heads_q / heads_kv) <= 2^30";
  if (a.seqlen_q < 0 || a.seqlen_k < 0) return "negative sequence length";
  if (!(a.softmax_scale > 0.f)) return "needs softmax_scale > 0";
  const int q_rows = a.q_varlen() ? a.total_q : a.seqlen_q;
  const int q_batch = a.q_varlen() ? 1 : a.batch;
  const int kv_rows = a.paged() ? a.page_size : (k_varlen ? a.total_k : a.seqlen_k);
  const int kv_batch = a.paged() ? a.num_pages : (k_varlen ? 1 : a.batch);
  const bool kv_empty = kv_rows == 0;  // never read: any strides do
  if (!tma_ok(a.q, q_rows, a.heads_q, q_batch, a.q_row_stride, a.q_head_stride,
              a.q_batch_stride) ||
      (!kv_empty && !tma_ok(a.k, kv_rows, a.heads_kv, kv_batch, a.k_row_stride,
                            a.k_head_stride, a.k_batch_stride)) ||
      (!kv_empty && !tma_ok(a.v, kv_rows, a.heads_kv, kv_batch, a.v_row_stride,
                            a.v_head_stride, a.v_batch_stride)) ||
      !tma_ok(a.out, q_rows, a.heads_q, q_batch, a.o_row_stride, a.o_head_stride,
              a.o_batch_stride))
    return "TMA needs 16-byte aligned q/k/v/out and positive strides that are "
           "multiples of 8 elements";
  return "";
}

size_t fwd_workspace_bytes(const AttnParams& a) {
  if (const int splits = fwd_num_splits(a); splits > 1)
    return kFwdCounterBytes + fwd_partial_bytes(a, splits);
#define FA4_SM90_WORKSPACE(D, DV, BN, ST, OVL, PP, LWG, SWG, SBN)                \
  if (a.head_dim == D && a.head_dim_v == DV) {                                 \
    return a.dtype == DType::kBFloat16                                         \
               ? fwd_workspace_bytes_hdim<cutlass::bfloat16_t, D, DV>(a)       \
               : fwd_workspace_bytes_hdim<cutlass::half_t, D, DV>(a);          \
  }
  FA4_SM90_FWD_HDIM_TABLE(FA4_SM90_WORKSPACE)
#undef FA4_SM90_WORKSPACE
  return 0;
}

cudaError_t run_fwd(const AttnParams& a, void* workspace, cudaStream_t stream) {
  const char* reason = fwd_unsupported_reason(a);
  if (reason[0] != '\0') return cudaErrorNotSupported;
  if (const cudaError_t err = clear_unowned_rows(a, stream); err != cudaSuccess) return err;
  const size_t workspace_bytes = fwd_workspace_bytes(a);
  int* tile_counter = workspace_bytes > 0 ? static_cast<int*>(workspace) : nullptr;
  if (tile_counter != nullptr) {
    const cudaError_t err = cudaMemsetAsync(
        tile_counter, 0, workspace_bytes < kFwdCounterBytes ? workspace_bytes : kFwdCounterBytes,
        stream);
    if (err != cudaSuccess) return err;
  }
  const int splits = fwd_num_splits(a);
  if (splits > 1 && tile_counter == nullptr) return cudaErrorInvalidValue;  // partials live there
  cudaError_t err = cudaErrorNotSupported;
#define FA4_SM90_DISPATCH(D, DV, BN, ST, OVL, PP, LWG, SWG, SBN)            \
  if (a.head_dim == D && a.head_dim_v == DV) {                              \
    err = a.dtype == DType::kBFloat16                                       \
              ? run_fwd_hdim<cutlass::bfloat16_t, D, DV>(a, tile_counter, stream) \
              : run_fwd_hdim<cutlass::half_t, D, DV>(a, tile_counter, stream);    \
  }
  FA4_SM90_FWD_HDIM_TABLE(FA4_SM90_DISPATCH)
#undef FA4_SM90_DISPATCH
  if (err != cudaSuccess || splits == 1) return err;
  return combine(a, workspace, splits, stream);
}

}  // namespace fa4::sm90
