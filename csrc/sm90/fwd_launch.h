// Public entry points of the sm90 forward kernel (compiled by nvcc for sm_90a).
#pragma once

#include <cuda_runtime.h>

#include "common/params.h"

namespace fa4::sm90 {
// Empty string when the sm90 forward kernel handles `params`; otherwise a short reason.
const char* fwd_unsupported_reason(const AttnParams& params);
// Bytes of device scratch run_fwd wants: a tile counter for the kernel it picks when that kernel
// hands out tiles heaviest first (FwdTraits::kTileCounter: persistent with a local mask), and with
// split-KV the splits' partial O / lse (fwd_dispatch.h); 0 for the others.
size_t fwd_workspace_bytes(const AttnParams& params);
// Launches on `stream`; returns cudaSuccess or the launch error. `workspace`: fwd_workspace_bytes
// bytes, any content (run_fwd zeroes the counter on the stream; every partial slot the combine
// reads is written first). Without it the local-mask kernels walk their tiles in a fixed order and
// split-KV is refused (cudaErrorInvalidValue).
cudaError_t run_fwd(const AttnParams& params, void* workspace, cudaStream_t stream);
inline cudaError_t run_fwd(const AttnParams& params, cudaStream_t stream) {
  return run_fwd(params, nullptr, stream);
}
}  // namespace fa4::sm90
