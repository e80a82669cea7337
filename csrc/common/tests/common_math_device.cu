// Compile check: the shared math (csrc/common) builds for the device exactly as for the host.
#include "common/exp2.h"
#include "common/mask.h"
#include "common/softmax.h"

__global__ void common_math_device(const float* scores, int n, float* out) {
  const fa4::MaskSpec mask = fa4::make_mask(n, n, true, -1, -1);
  fa4::RowSoftmaxState<float> state;
  state.init();
  float acc = 0.f;
  for (int j = 0; j < n; ++j) {
    const bool in_fragment = (fa4::fragment_cols_below<32>(n - j) >> (j % 32)) & 1u;
    const float s = mask.visible(threadIdx.x, j) && in_fragment ? scores[j] : -INFINITY;
    acc *= state.update_max(s, fa4::kRescaleThresholdLog2);
    const float p = fa4::exp2_poly(s - state.max_for_exp());
    state.row_sum += p;
    acc += p * j;
  }
  out[threadIdx.x] = acc * state.inv_sum() + state.lse();
}
