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
// Gradients with rows run_bwd does not write, which must then arrive zero-filled (their value):
// dq rows past a sequence's queries (varlen q, seqused_q); dk / dv rows past a sequence's keys
// (varlen keys, seqused_k) and key blocks that no query sees (a left window, a batch entry without
// queries, no queries at all). Dense batched inputs without a left window have neither, and skip
// the fill (three memsets as large as q, k and v).
struct BwdUnwrittenRows {
  bool dq;
  bool dkdv;
};
BwdUnwrittenRows bwd_unwritten_rows(const AttnBwdParams& params);
// dq, dk, dv: zero-filled where bwd_unwritten_rows says so; dsink zero-filled. `workspace` holds
// bwd_workspace_bytes bytes, 256-byte aligned, of any content (the preprocess writes what is read).
cudaError_t run_bwd(const AttnBwdParams& params, void* workspace, cudaStream_t stream);
}  // namespace fa4::sm90
