// The kernels behind the op layer, one entry point per backend.
#pragma once

#include <torch/csrc/stable/tensor.h>

#include <string>

#include "common/params.h"

namespace fa4::cpu {
void run_fwd(const AttnParams& params);
void run_bwd(const AttnBwdParams& params);
}  // namespace fa4::cpu

namespace fa4::api {
// CUDA backend (cuda_backend.cpp). In a build without nvcc these raise an error that says how to
// build the CUDA kernels; cuda_stream_capturing then returns false.
bool cuda_stream_capturing(int device_index);
// `like`: a tensor on the target device (for the forward's few bytes of scratch).
void run_fwd_cuda(const AttnParams& params, const torch::stable::Tensor& like);
// `like`: a tensor on the target device, for the backward's scratch allocation.
void run_bwd_cuda(const AttnBwdParams& params, const torch::stable::Tensor& like);
// Whether the CUDA backward leaves rows of dq (*dq) or of dk / dv (*dkdv) unwritten, so that they
// must be allocated zero-filled (true for both when no CUDA backward is built).
void cuda_bwd_unwritten_rows(const AttnBwdParams& params, bool* dq, bool* dkdv);
// y = fa4::exp2_poly(x) elementwise on device pointers (the device build of csrc/common/exp2.h).
void run_exp2_poly_cuda(const float* x, float* y, int64_t n, int device_index);
// JSON fragment: {"cuda": ..., "archs": [...], "kernels": [...]}.
std::string cuda_build_info_json();
}  // namespace fa4::api
