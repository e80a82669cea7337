// Op layer: turns the fa4::fwd / fa4::bwd arguments into validated kernel params.
#pragma once

#include <torch/csrc/stable/tensor.h>

#include <optional>

#include "api/checks.h"
#include "common/params.h"

namespace fa4::api {

// The arguments fwd and bwd share, in schema order.
struct AttnArgs {
  Tensor q, k, v;
  std::optional<Tensor> cu_seqlens_q, cu_seqlens_k, seqused_q, seqused_k;
  std::optional<int64_t> max_seqlen_q, max_seqlen_k;
  std::optional<Tensor> page_table, learnable_sink;
  std::optional<double> softmax_scale;
  bool causal;
  int64_t window_size_left, window_size_right;
  double softcap;
  int64_t num_splits;
  std::optional<bool> pack_gqa;
};

// Checks every argument (shapes, dtypes, devices, values; index tensors' contents too unless a CUDA
// graph is being captured) and fills the arch-neutral params, tensor pointers excepted for out/lse.
AttnParams make_params(const AttnArgs& args);

// Shape of out for q (batched or varlen) and head_dim_v; shape of lse.
std::vector<int64_t> out_shape(const AttnArgs& args);
std::vector<int64_t> lse_shape(const AttnArgs& args);

// (batch, row, head) element strides of a (batch, seqlen, heads, d) tensor, or of a varlen
// (total, heads, d) one (batch stride 0): AttnParams' addressing convention.
void row_strides(const Tensor& t, bool varlen, int64_t& batch_stride, int64_t& row_stride,
                 int64_t& head_stride);

// Points params at out and lse after checking them against q.
void set_out_lse(AttnParams& params, const AttnArgs& args, const Tensor& out, const Tensor& lse,
                 const char* out_name, const char* lse_name);

}  // namespace fa4::api
