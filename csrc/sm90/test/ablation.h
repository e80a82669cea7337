// Registry of the FA4-switch ablation kernels (bf16): each ablation_variant.cu object, compiled with
// its own -D settings by build.sh, adds one entry; `test_fwd ablation` times them all.
#pragma once

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#include <vector>

#include "common/params.h"

namespace fa4::sm90::ablation {

struct Variant {
  int head_dim;
  int block_n;   // keys per block
  int num_wg;    // consumer warpgroups (64 query rows each)
  bool causal;
  bool rescale;  // conditional rescaling (threshold log2(256)) vs always rescale
  int poly_per8; // exponentials of every 8 computed by exp2_poly on the FMA pipe
  bool ping_pong;
  bool overlap;  // QK^T of the next block issued before this block's softmax
  cudaError_t (*run)(const AttnParams&, cudaStream_t);
};

inline std::vector<Variant>& variants() {
  static std::vector<Variant> v;
  return v;
}

// A tile counter zeroed on `stream` before each launch, as the torch op's workspace is: the causal /
// window persistent kernels then take their tiles heaviest first, as they do in the benchmark
// (without one they walk a fixed order: d 128 causal 16k read 448 instead of 629 TFLOP/s). The memset is inside
// the timed region, as the op's is.
inline int* zeroed_tile_counter(cudaStream_t stream) {
  static int* counter = nullptr;
  // A failure must not quietly fall back to the fixed walk (its timings would be mislabelled).
  if ((counter == nullptr && cudaMalloc(&counter, 16) != cudaSuccess) ||
      cudaMemsetAsync(counter, 0, 16, stream) != cudaSuccess) {
    fprintf(stderr, "zeroed_tile_counter: %s\n", cudaGetErrorString(cudaGetLastError()));
    abort();
  }
  return counter;
}

}  // namespace fa4::sm90::ablation
