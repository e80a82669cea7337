#include "common/exp2.h"
#include "sm90/common_math_launch.h"

namespace fa4::sm90 {
namespace {
__global__ void exp2_poly_kernel(const float* x, float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    y[i] = exp2_poly(x[i]);
  }
}
}  // namespace

cudaError_t run_exp2_poly(const float* x, float* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  exp2_poly_kernel<<<int(blocks < 4096 ? blocks : 4096), kThreads, 0, stream>>>(x, y, n);
  return cudaGetLastError();
}
}  // namespace fa4::sm90
