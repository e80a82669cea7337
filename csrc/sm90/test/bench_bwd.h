// Stand-alone timing of the sm90 backward main kernel (bench_bwd.cu), for same-machine A/B of
// source trees (bench/ab_bwd.sh). One explicit specialisation per head dim, in its own unit.
#pragma once
#include <cuda_runtime.h>

#include "common/params.h"
#include "sm90/bwd_scratch.h"

template <int kHeadDim>
cudaError_t bb_run(const fa4::AttnBwdParams& a, const fa4::sm90::BwdScratch& s, cudaStream_t stream);
