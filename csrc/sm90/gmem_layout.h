// Global-memory views for TMA, shared by the sm90 forward and backward launchers.
#pragma once

#include <stdint.h>

#include <cute/tensor.hpp>

namespace fa4::sm90 {

// Global (rows, dim, head, batch) layout with dim contiguous. TMA wants every stride a multiple of
// 16 bytes; a stride of an extent-1 mode is never used, so it is replaced by a harmless one. An
// empty tensor (rows == 0: seqlen_k == 0, never read) becomes a single row.
inline cute::Layout<cute::Shape<int32_t, int32_t, int32_t, int32_t>,
                    cute::Stride<int64_t, cute::_1, int64_t, int64_t>>
make_gmem_layout(int rows, int dim, int heads, int batch, int64_t row_stride, int64_t head_stride,
                 int64_t batch_stride) {
  if (rows <= 0) rows = heads = batch = 1;
  int64_t span = dim;
  if (rows > 1 && row_stride * rows > span) span = row_stride * rows;
  if (heads > 1 && head_stride * heads > span) span = head_stride * heads;
  if (batch > 1 && batch_stride * batch > span) span = batch_stride * batch;
  span = (span + 7) / 8 * 8;
  if (rows == 1) row_stride = span;
  if (heads == 1) head_stride = span;
  if (batch == 1) batch_stride = span;
  return cute::make_layout(cute::make_shape(rows, dim, heads, batch),
                           cute::make_stride(row_stride, cute::_1{}, head_stride, batch_stride));
}

// TMA: 16-byte aligned base, strides multiples of 16 bytes (8 16-bit elements); an extent-1 mode's
// stride is never used.
inline bool tma_ok(const void* ptr, int rows, int heads, int batch, int64_t row_stride,
                   int64_t head_stride, int64_t batch_stride) {
  if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) return false;
  auto ok = [](int extent, int64_t stride) {
    return extent <= 1 || (stride > 0 && stride % 8 == 0 && stride < (int64_t(1) << 39));
  };
  return ok(rows, row_stride) && ok(heads, head_stride) && ok(batch, batch_stride);
}

}  // namespace fa4::sm90
