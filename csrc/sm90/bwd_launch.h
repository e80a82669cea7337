// Public API of the sm90 backward (see NOTES.md).
#pragma once

#include <cuda_runtime.h>
#include <stddef.h>

#include "common/params.h"

namespace fa4::sm90 {
// "" when the sm90 backward handles these parameters, else why not (the caller prefixes
// "sm90 backward: ").
const char* bwd_unsupported_reason(const AttnBwdParams& params);
// Bytes of device scratch run_bwd needs (fp32 dQ accumulator, lse / D rows, semaphores).
size_t bwd_workspace_bytes(const AttnBwdParams& params);
// dq, dk, dv (and dsink) must be zero-filled: rows no sequence owns keep that. `workspace` holds
// bwd_workspace_bytes zero-filled bytes, 256-byte aligned.
cudaError_t run_bwd(const AttnBwdParams& params, void* workspace, cudaStream_t stream);
}  // namespace fa4::sm90
