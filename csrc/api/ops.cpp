// The fa4 operator library: schemas, and the device-neutral implementations that validate, allocate
// and hand params to a backend. Registered through the LibTorch stable ABI, so one binary serves
// every torch >= 2.10.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>

#include <string>
#include <tuple>

#include "api/attention_args.h"
#include "api/backends.h"
#include "common/exp2.h"

namespace fa4::api {
namespace {

using OptTensor = std::optional<Tensor>;

// One schema fragment for the arguments fwd and bwd share, so they cannot drift.
#define FA4_INDEX_ARGS                                                                        \
  "Tensor? cu_seqlens_q=None, Tensor? cu_seqlens_k=None, Tensor? seqused_q=None, "            \
  "Tensor? seqused_k=None, int? max_seqlen_q=None, int? max_seqlen_k=None"
#define FA4_MASK_ARGS                                                                         \
  "float? softmax_scale=None, bool causal=False, int window_size_left=-1, "                   \
  "int window_size_right=-1, float softcap=0.0"
#define FA4_FWD_ARGS                                                                          \
  "Tensor q, Tensor k, Tensor v, " FA4_INDEX_ARGS ", Tensor? page_table=None, "               \
  "Tensor? learnable_sink=None, " FA4_MASK_ARGS ", int num_splits=1, bool? pack_gqa=None, "   \
  "bool deterministic=False, Tensor? q_descale=None, Tensor? k_descale=None, "                \
  "Tensor? v_descale=None"

AttnArgs fwd_args(Tensor q, Tensor k, Tensor v, OptTensor cu_seqlens_q, OptTensor cu_seqlens_k,
                  OptTensor seqused_q, OptTensor seqused_k, std::optional<int64_t> max_seqlen_q,
                  std::optional<int64_t> max_seqlen_k, OptTensor page_table,
                  OptTensor learnable_sink, std::optional<double> softmax_scale, bool causal,
                  int64_t window_size_left, int64_t window_size_right, double softcap,
                  int64_t num_splits, std::optional<bool> pack_gqa, const OptTensor& q_descale,
                  const OptTensor& k_descale, const OptTensor& v_descale) {
  FA4_CHECK_IMPLEMENTED(!q_descale && !k_descale && !v_descale,
                        "fp8 descale factors (q_descale, k_descale, v_descale) are reserved for "
                        "fp8 kernels, which are not built yet; pass None");
  return AttnArgs{q, k, v, cu_seqlens_q, cu_seqlens_k, seqused_q, seqused_k, max_seqlen_q,
                  max_seqlen_k, page_table, learnable_sink, softmax_scale, causal,
                  window_size_left, window_size_right, softcap, num_splits, pack_gqa};
}

void run_fwd(const AttnParams& params, const Tensor& q) {
  if (q.is_cpu()) {
    fa4::cpu::run_fwd(params);
  } else {
    run_fwd_cuda(params, q);
  }
}

std::tuple<Tensor, Tensor> fwd(Tensor q, Tensor k, Tensor v, OptTensor cu_seqlens_q,
                               OptTensor cu_seqlens_k, OptTensor seqused_q, OptTensor seqused_k,
                               std::optional<int64_t> max_seqlen_q,
                               std::optional<int64_t> max_seqlen_k, OptTensor page_table,
                               OptTensor learnable_sink, std::optional<double> softmax_scale,
                               bool causal, int64_t window_size_left, int64_t window_size_right,
                               double softcap, int64_t num_splits, std::optional<bool> pack_gqa,
                               bool /*deterministic: read by the autograd backward only*/,
                               OptTensor q_descale, OptTensor k_descale, OptTensor v_descale) {
  const AttnArgs a = fwd_args(q, k, v, cu_seqlens_q, cu_seqlens_k, seqused_q, seqused_k,
                              max_seqlen_q, max_seqlen_k, page_table, learnable_sink,
                              softmax_scale, causal, window_size_left, window_size_right, softcap,
                              num_splits, pack_gqa, q_descale, k_descale, v_descale);
  check_env_knobs();
  AttnParams params = make_params(a);
  Tensor out = torch::stable::new_empty(q, out_shape(a));
  Tensor lse = torch::stable::new_empty(q, lse_shape(a), ScalarType::Float);
  set_out_lse(params, a, out, lse, "out", "lse");
  run_fwd(params, q);
  return {out, lse};
}

// fwd.out: writes into caller-provided `out` and `lse` (a separate overload because a functional op
// may not return an alias of its input).
void fwd_out(Tensor q, Tensor k, Tensor v, OptTensor cu_seqlens_q, OptTensor cu_seqlens_k,
               OptTensor seqused_q, OptTensor seqused_k, std::optional<int64_t> max_seqlen_q,
               std::optional<int64_t> max_seqlen_k, OptTensor page_table, OptTensor learnable_sink,
               std::optional<double> softmax_scale, bool causal, int64_t window_size_left,
               int64_t window_size_right, double softcap, int64_t num_splits,
               std::optional<bool> pack_gqa, bool /*deterministic*/, OptTensor q_descale,
               OptTensor k_descale, OptTensor v_descale, Tensor out, Tensor lse) {
  const AttnArgs a = fwd_args(q, k, v, cu_seqlens_q, cu_seqlens_k, seqused_q, seqused_k,
                              max_seqlen_q, max_seqlen_k, page_table, learnable_sink,
                              softmax_scale, causal, window_size_left, window_size_right, softcap,
                              num_splits, pack_gqa, q_descale, k_descale, v_descale);
  check_env_knobs();
  AttnParams params = make_params(a);
  set_out_lse(params, a, out, lse, "out", "lse");
  run_fwd(params, q);
}

std::tuple<Tensor, Tensor, Tensor, Tensor> bwd(
    Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, OptTensor cu_seqlens_q,
    OptTensor cu_seqlens_k, OptTensor seqused_q, OptTensor seqused_k,
    std::optional<int64_t> max_seqlen_q, std::optional<int64_t> max_seqlen_k,
    OptTensor learnable_sink, std::optional<double> softmax_scale, bool causal,
    int64_t window_size_left, int64_t window_size_right, double softcap, bool deterministic,
    OptTensor dlse) {
  const AttnArgs a{q, k, v, cu_seqlens_q, cu_seqlens_k, seqused_q, seqused_k, max_seqlen_q,
                   max_seqlen_k, std::nullopt, learnable_sink, softmax_scale, causal,
                   window_size_left, window_size_right, softcap, 1, std::nullopt};
  check_env_knobs();
  AttnBwdParams params{};
  static_cast<AttnParams&>(params) = make_params(a);
  // out and lse are inputs here; dout must match out exactly.
  set_out_lse(params, a, out, lse, "out", "lse");
  check_dtype(dout, "dout", q.scalar_type());
  check_same_device(dout, "dout", q, "q");
  check_dim(dout, "dout", out.dim(), "tensor shaped like out");
  for (int64_t i = 0; i < out.dim(); ++i) check_size(dout, "dout", i, out.size(i), "as out");
  check_last_dim_contiguous(dout, "dout");
  if (dlse) {
    check_dtype(*dlse, "dlse", ScalarType::Float);
    check_same_device(*dlse, "dlse", q, "q");
    check_dim(*dlse, "dlse", lse.dim(), "tensor shaped like lse");
    for (int64_t i = 0; i < lse.dim(); ++i) check_size(*dlse, "dlse", i, lse.size(i), "as lse");
    for (int64_t i = 0; i < lse.dim(); ++i)
      FA4_CHECK(dlse->stride(i) == lse.stride(i) || lse.size(i) <= 1, "dlse must have lse's strides ",
                "(dlse.stride(", i, ") = ", dlse->stride(i), ", lse.stride(", i, ") = ", lse.stride(i), ")");
    params.dlse = dlse->const_data_ptr<float>();
  }

  const bool q_varlen = cu_seqlens_q.has_value(), k_varlen = cu_seqlens_k.has_value();
  // Rows no sequence owns (and keys no query sees) hold 0; the CUDA backward says which of the
  // gradients have such rows and skips the fill of the others.
  bool zero_dq = true, zero_dkdv = true;
  if (!q.is_cpu()) cuda_bwd_unwritten_rows(params, &zero_dq, &zero_dkdv);
  auto grad_like = [](const Tensor& t, bool zero) {
    const std::vector<int64_t> sizes(t.sizes().begin(), t.sizes().end());
    return zero ? torch::stable::new_zeros(t, sizes) : torch::stable::new_empty(t, sizes);
  };
  Tensor dq = grad_like(q, zero_dq);
  Tensor dk = grad_like(k, zero_dkdv);
  Tensor dv = grad_like(v, zero_dkdv);
  Tensor dsink = torch::stable::new_zeros(q, learnable_sink ? std::vector<int64_t>{q.size(-2)}
                                                            : std::vector<int64_t>{0},
                                          ScalarType::Float);
  params.dout = dout.const_data_ptr();
  row_strides(dout, q_varlen, params.do_batch_stride, params.do_row_stride, params.do_head_stride);
  params.dq = dq.mutable_data_ptr();
  params.dk = dk.mutable_data_ptr();
  params.dv = dv.mutable_data_ptr();
  row_strides(dq, q_varlen, params.dq_batch_stride, params.dq_row_stride, params.dq_head_stride);
  row_strides(dk, k_varlen, params.dk_batch_stride, params.dk_row_stride, params.dk_head_stride);
  row_strides(dv, k_varlen, params.dv_batch_stride, params.dv_row_stride, params.dv_head_stride);
  params.dsink = learnable_sink ? dsink.mutable_data_ptr<float>() : nullptr;
  params.deterministic = deterministic;
  if (q.is_cpu()) {
    fa4::cpu::run_bwd(params);
  } else {
    run_bwd_cuda(params, q);
  }
  return {dq, dk, dv, dsink};
}

std::string build_info() {
  return std::string("{\"torch_target\": \"2.10\", \"cpu_kernels\": [\"fwd\", \"bwd\"], ") +
         cuda_build_info_json() + "}";
}

// The software exp2 of csrc/common/exp2.h on float32 tensors, so tests can check the exact
// definition the kernels use: its host build on CPU tensors, its device build on CUDA tensors.
Tensor exp2_poly(Tensor x) {
  check_dtype(x, "x", ScalarType::Float);
  Tensor xc = torch::stable::contiguous(x);
  Tensor y = torch::stable::empty_like(xc);
  const float* in = xc.const_data_ptr<float>();
  float* outp = y.mutable_data_ptr<float>();
  if (xc.is_cpu()) {
    for (int64_t i = 0; i < xc.numel(); ++i) outp[i] = fa4::exp2_poly(in[i]);
  } else {
    run_exp2_poly_cuda(in, outp, xc.numel(), xc.get_device_index());
  }
  return y;
}

}  // namespace

STABLE_TORCH_LIBRARY(fa4, m) {
  m.def("fwd(" FA4_FWD_ARGS ") -> (Tensor out, Tensor lse)");
  m.def("fwd.out(" FA4_FWD_ARGS ", *, Tensor(a!) out, Tensor(b!) lse) -> ()");
  m.def("bwd(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, " FA4_INDEX_ARGS
        ", Tensor? learnable_sink=None, " FA4_MASK_ARGS
        ", bool deterministic=False, Tensor? dlse=None) -> (Tensor dq, Tensor dk, Tensor dv, "
        "Tensor dsink)");
  m.def("build_info() -> str");
  m.def("exp2_poly(Tensor x) -> Tensor");
}

STABLE_TORCH_LIBRARY_IMPL(fa4, CPU, m) {
  m.impl("fwd", TORCH_BOX(&fwd));
  m.impl("fwd.out", TORCH_BOX(&fwd_out));
  m.impl("bwd", TORCH_BOX(&bwd));
  m.impl("exp2_poly", TORCH_BOX(&exp2_poly));
}

STABLE_TORCH_LIBRARY_IMPL(fa4, CUDA, m) {
  m.impl("fwd", TORCH_BOX(&fwd));
  m.impl("fwd.out", TORCH_BOX(&fwd_out));
  m.impl("bwd", TORCH_BOX(&bwd));
  m.impl("exp2_poly", TORCH_BOX(&exp2_poly));
}

STABLE_TORCH_LIBRARY_IMPL(fa4, CompositeExplicitAutograd, m) {
  m.impl("build_info", TORCH_BOX(&build_info));
}

}  // namespace fa4::api
