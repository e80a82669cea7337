// The shared math of csrc/common run on the GPU by itself, so tests can check that the device build
// of a definition the kernels use gives the host build's results bit for bit.
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

namespace fa4::sm90 {
// y[i] = fa4::exp2_poly(x[i]) for i < n (device pointers).
cudaError_t run_exp2_poly(const float* x, float* y, int64_t n, cudaStream_t stream);
}  // namespace fa4::sm90
