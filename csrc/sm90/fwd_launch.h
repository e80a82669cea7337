// Public entry points of the sm90 forward kernel (compiled by nvcc for sm_90a).
#pragma once

#include <cuda_runtime.h>

#include "common/params.h"

namespace fa4::sm90 {
// Empty string when the sm90 forward kernel handles `params`; otherwise a short reason.
const char* fwd_unsupported_reason(const AttnParams& params);
// Launches on `stream`; returns cudaSuccess or the launch error.
cudaError_t run_fwd(const AttnParams& params, cudaStream_t stream);
}  // namespace fa4::sm90
