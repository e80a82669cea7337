#include "api/attention_args.h"

#include <torch/csrc/stable/ops.h>

#include <cmath>
#include <vector>

#include "api/backends.h"

namespace fa4::api {
namespace {

bool is_float_type(ScalarType t) {
  return t == ScalarType::Half || t == ScalarType::BFloat16 || t == ScalarType::Float ||
         t == ScalarType::Double;
}

DType to_dtype(ScalarType t) {
  switch (t) {
    case ScalarType::Half: return DType::kFloat16;
    case ScalarType::BFloat16: return DType::kBFloat16;
    case ScalarType::Float: return DType::kFloat32;
    default: return DType::kFloat64;
  }
}

void check_head_dim(int64_t d, const char* name) {
  FA4_CHECK(d > 0 && d <= 256 && d % 8 == 0, name,
            " must be a multiple of 8 in [8, 256], got ", d);
}

// An int32 index tensor of `length` entries on q's device.
void check_index_tensor(const Tensor& t, const char* name, int64_t length, const Tensor& q,
                        const char* length_what) {
  check_dtype(t, name, ScalarType::Int);
  check_same_device(t, name, q, "q");
  check_dim(t, name, 1, "tensor");
  FA4_CHECK(t.size(0) == length, name, " must have ", length, " entries (", length_what,
            "), got ", t.size(0));
  check_contiguous(t, name);
}

// Index tensors' contents, read on the host. CPU kernels read them directly, so this is what keeps
// them in bounds; for CUDA inputs it costs a small device-to-host copy (skipped while a CUDA graph
// is being captured, where a copy is not allowed).
struct HostIndex {
  Tensor host;
  const int32_t* data = nullptr;
  explicit HostIndex(const Tensor& t) : host(t.is_cpu() ? t : torch::stable::to(t, torch::stable::Device(torch::headeronly::DeviceType::CPU))) {
    data = host.const_data_ptr<int32_t>();
  }
};

void check_cu_seqlens(const Tensor& cu, const char* name, int64_t total_rows, const char* rows_name,
                      std::optional<int64_t> max_seqlen, const char* max_name) {
  HostIndex h(cu);
  const int64_t n = cu.size(0);
  FA4_CHECK(h.data[0] >= 0, name, "[0] must be >= 0, got ", h.data[0]);
  for (int64_t i = 0; i + 1 < n; ++i) {
    const int64_t len = int64_t(h.data[i + 1]) - h.data[i];
    FA4_CHECK(len >= 0, name, " must be non-decreasing, got ", name, "[", i, "] = ", h.data[i],
              " > ", name, "[", i + 1, "] = ", h.data[i + 1]);
    FA4_CHECK(!max_seqlen || len <= *max_seqlen, max_name, " (", *max_seqlen,
              ") must be >= every sequence length, but sequence ", i, " has length ", len);
  }
  FA4_CHECK(h.data[n - 1] <= total_rows, name, "[-1] must be <= ", rows_name, " (", total_rows,
            "), got ", h.data[n - 1]);
}

void check_seqused(const Tensor& used, const char* name, const std::optional<Tensor>& cu,
                   int64_t padded_len, const char* padded_what) {
  HostIndex h(used);
  std::optional<HostIndex> hc;
  if (cu) hc.emplace(*cu);
  for (int64_t b = 0; b < used.size(0); ++b) {
    const int64_t cap = hc ? int64_t(hc->data[b + 1]) - hc->data[b] : padded_len;
    FA4_CHECK(h.data[b] >= 0 && h.data[b] <= cap, name, "[", b, "] must be in [0, ", cap, "] (",
              hc ? "its cu_seqlens length" : padded_what, "), got ", h.data[b]);
  }
}

void check_page_table(const Tensor& page_table, const std::optional<Tensor>& seqused_k,
                      int64_t page_size, int64_t num_pages) {
  HostIndex h(page_table);
  std::optional<HostIndex> hu;
  if (seqused_k) hu.emplace(*seqused_k);
  const int64_t cols = page_table.size(1);
  for (int64_t b = 0; b < page_table.size(0); ++b) {
    const int64_t len = hu ? hu->data[b] : cols * page_size;
    const int64_t used_pages = (len + page_size - 1) / page_size;
    for (int64_t p = 0; p < used_pages; ++p) {
      const int32_t page = h.data[b * page_table.stride(0) + p];
      FA4_CHECK(page >= 0 && page < num_pages, "page_table[", b, ", ", p,
                "] must be a page index in [0, ", num_pages, ") (k.shape[0]), got ", page);
    }
  }
}

}  // namespace

std::vector<int64_t> out_shape(const AttnArgs& a) {
  std::vector<int64_t> shape(a.q.sizes().begin(), a.q.sizes().end());
  shape.back() = a.v.size(-1);
  return shape;
}

std::vector<int64_t> lse_shape(const AttnArgs& a) {
  if (a.cu_seqlens_q) return {a.q.size(1), a.q.size(0)};
  return {a.q.size(0), a.q.size(2), a.q.size(1)};
}

AttnParams make_params(const AttnArgs& a) {
  const Tensor &q = a.q, &k = a.k, &v = a.v;
  FA4_CHECK(is_float_type(q.scalar_type()), "q must have dtype float16 or bfloat16 (float32 and "
            "float64 on CPU), got ", dtype_name(q.scalar_type()));
  check_dtype(k, "k", q.scalar_type());
  check_dtype(v, "v", q.scalar_type());
  check_same_device(k, "k", q, "q");
  check_same_device(v, "v", q, "q");
  FA4_CHECK(q.is_cpu() || q.is_cuda(), "q must be on a CPU or CUDA device, got ", device_of(q));
  FA4_CHECK(q.is_cpu() || q.scalar_type() == ScalarType::Half ||
                q.scalar_type() == ScalarType::BFloat16,
            "q must have dtype float16 or bfloat16 on CUDA, got ", dtype_name(q.scalar_type()));

  const bool q_varlen = a.cu_seqlens_q.has_value();
  const bool paged = a.page_table.has_value();
  const bool k_varlen = a.cu_seqlens_k.has_value();
  FA4_CHECK(!(paged && k_varlen), "cu_seqlens_k must be None with page_table (give key lengths "
            "through seqused_k), got a tensor");

  check_dim(q, "q", q_varlen ? 3 : 4,
            q_varlen ? "(total_q, heads, head_dim) with cu_seqlens_q" : "(batch, seqlen_q, heads, head_dim)");
  const char* kv_layout = paged ? "(num_pages, page_size, heads_kv, head_dim) with page_table"
                          : k_varlen ? "(total_k, heads_kv, head_dim) with cu_seqlens_k"
                                     : "(batch, seqlen_k, heads_kv, head_dim)";
  const int64_t kv_dims = k_varlen ? 3 : 4;
  check_dim(k, "k", kv_dims, kv_layout);
  check_dim(v, "v", kv_dims, kv_layout);
  for (const auto& [t, name] : {std::pair{q, "q"}, std::pair{k, "k"}, std::pair{v, "v"}})
    check_last_dim_contiguous(t, name);

  const int64_t head_dim = q.size(-1), head_dim_v = v.size(-1);
  check_head_dim(head_dim, "q.shape[-1] (head_dim)");
  check_head_dim(head_dim_v, "v.shape[-1] (head_dim_v)");
  check_size(k, "k", kv_dims - 1, head_dim, "head_dim, as in q");
  const int64_t heads_q = q.size(-2), heads_kv = k.size(-2);
  check_size(v, "v", kv_dims - 2, heads_kv, "heads_kv, as in k");
  for (int64_t i = 0; i + 2 < kv_dims; ++i) check_size(v, "v", i, k.size(i), "as in k");
  FA4_CHECK(heads_kv > 0 && heads_q % heads_kv == 0, "q's heads (", heads_q,
            ") must be a multiple of k's heads (", heads_kv, ")");

  const int64_t batch = q_varlen ? a.cu_seqlens_q->size(0) - 1 : q.size(0);
  if (q_varlen) {
    FA4_CHECK(a.cu_seqlens_q->size(0) >= 1, "cu_seqlens_q must have batch + 1 >= 1 entries, got 0");
    FA4_CHECK(a.max_seqlen_q.has_value(), "max_seqlen_q must be given with cu_seqlens_q, got None");
  }
  if (q_varlen) check_index_tensor(*a.cu_seqlens_q, "cu_seqlens_q", batch + 1, q, "batch + 1");
  if (k_varlen) {
    check_index_tensor(*a.cu_seqlens_k, "cu_seqlens_k", batch + 1, q, "batch + 1, batch from q");
    FA4_CHECK(a.max_seqlen_k.has_value(), "max_seqlen_k must be given with cu_seqlens_k, got None");
  } else if (paged) {
    const Tensor& pt = *a.page_table;
    check_dtype(pt, "page_table", ScalarType::Int);
    check_same_device(pt, "page_table", q, "q");
    check_dim(pt, "page_table", 2, "(batch, max_pages_per_sequence)");
    check_size(pt, "page_table", 0, batch, "batch, from q");
    FA4_CHECK(pt.size(1) == 0 || pt.stride(1) == 1, "page_table must have a contiguous last dimension");
    FA4_CHECK(k.size(1) > 0, "k.shape[1] (page_size) must be >= 1, got ", k.size(1));
  } else {
    check_size(k, "k", 0, batch, "batch, as in q");
  }
  if (a.seqused_q) check_index_tensor(*a.seqused_q, "seqused_q", batch, q, "batch");
  if (a.seqused_k) check_index_tensor(*a.seqused_k, "seqused_k", batch, q, "batch");
  for (const auto& [val, name] : {std::pair{a.max_seqlen_q, "max_seqlen_q"},
                                  std::pair{a.max_seqlen_k, "max_seqlen_k"}}) {
    FA4_CHECK(!val || (*val >= 0 && *val <= INT32_MAX), name, " must be in [0, 2^31), got ", *val);
  }
  if (a.learnable_sink) {
    const Tensor& s = *a.learnable_sink;
    check_dtype(s, "learnable_sink", ScalarType::Float);
    check_same_device(s, "learnable_sink", q, "q");
    check_dim(s, "learnable_sink", 1, "tensor of one logit per query head");
    check_size(s, "learnable_sink", 0, heads_q, "heads of q");
    check_contiguous(s, "learnable_sink");
  }

  const double scale = a.softmax_scale ? *a.softmax_scale : 1.0 / std::sqrt(double(head_dim));
  FA4_CHECK(std::isfinite(scale), "softmax_scale must be finite, got ", scale);
  FA4_CHECK(a.window_size_left >= -1, "window_size[0] (left) must be >= -1 (-1: unbounded), got ",
            a.window_size_left);
  FA4_CHECK(a.window_size_right >= -1, "window_size[1] (right) must be >= -1 (-1: unbounded), got ",
            a.window_size_right);
  FA4_CHECK(std::isfinite(a.softcap) && a.softcap >= 0, "softcap must be >= 0 (0: off), got ", a.softcap);
  FA4_CHECK(a.num_splits >= 0, "num_splits must be >= 0 (0: automatic), got ", a.num_splits);

  // Contents of the index tensors.
  const bool capturing = q.is_cuda() && cuda_stream_capturing(q.get_device_index());
  const int64_t page_size = paged ? k.size(1) : 0;
  if (!capturing) {
    if (q_varlen)
      check_cu_seqlens(*a.cu_seqlens_q, "cu_seqlens_q", q.size(0), "q.shape[0]", a.max_seqlen_q,
                       "max_seqlen_q");
    if (k_varlen)
      check_cu_seqlens(*a.cu_seqlens_k, "cu_seqlens_k", k.size(0), "k.shape[0]", a.max_seqlen_k,
                       "max_seqlen_k");
    if (a.seqused_q) check_seqused(*a.seqused_q, "seqused_q", a.cu_seqlens_q, q.size(1), "q.shape[1]");
    if (a.seqused_k) {
      const int64_t padded = paged ? a.page_table->size(1) * page_size : k.size(1);
      check_seqused(*a.seqused_k, "seqused_k", a.cu_seqlens_k, padded,
                    paged ? "page_table.shape[1] * page_size" : "k.shape[1]");
    }
    if (paged) check_page_table(*a.page_table, a.seqused_k, page_size, k.size(0));
  }

  AttnParams p{};
  p.dtype = to_dtype(q.scalar_type());
  p.batch = static_cast<int>(batch);
  p.heads_q = static_cast<int>(heads_q);
  p.heads_kv = static_cast<int>(heads_kv);
  p.head_dim = static_cast<int>(head_dim);
  p.head_dim_v = static_cast<int>(head_dim_v);
  p.seqlen_q = static_cast<int>(q_varlen ? *a.max_seqlen_q : q.size(1));
  p.seqlen_k = static_cast<int>(k_varlen ? *a.max_seqlen_k
                                : paged  ? a.page_table->size(1) * page_size
                                         : k.size(1));
  p.total_q = static_cast<int>(q_varlen ? q.size(0) : batch * q.size(1));
  p.total_k = static_cast<int>(k_varlen ? k.size(0) : 0);
  auto index_ptr = [](const std::optional<Tensor>& t) {
    return t ? t->const_data_ptr<int32_t>() : nullptr;
  };
  p.cu_seqlens_q = index_ptr(a.cu_seqlens_q);
  p.cu_seqlens_k = index_ptr(a.cu_seqlens_k);
  p.seqused_q = index_ptr(a.seqused_q);
  p.seqused_k = index_ptr(a.seqused_k);
  p.page_table = index_ptr(a.page_table);
  if (paged) {
    p.page_table_batch_stride = a.page_table->stride(0);
    p.page_table_cols = static_cast<int>(a.page_table->size(1));
    p.page_size = static_cast<int>(page_size);
    p.num_pages = static_cast<int>(k.size(0));
  }
  p.learnable_sink = a.learnable_sink ? a.learnable_sink->const_data_ptr<float>() : nullptr;
  p.softmax_scale = static_cast<float>(scale);
  p.softcap = static_cast<float>(a.softcap);
  p.causal = a.causal;
  p.window_left = static_cast<int>(a.window_size_left);
  p.window_right = static_cast<int>(a.window_size_right);
  p.num_splits = static_cast<int>(a.num_splits);
  p.pack_gqa = a.pack_gqa.has_value() ? int(*a.pack_gqa) : -1;

  p.q = q.const_data_ptr();
  p.k = k.const_data_ptr();
  p.v = v.const_data_ptr();
  row_strides(q, q_varlen, p.q_batch_stride, p.q_row_stride, p.q_head_stride);
  row_strides(k, k_varlen, p.k_batch_stride, p.k_row_stride, p.k_head_stride);
  row_strides(v, k_varlen, p.v_batch_stride, p.v_row_stride, p.v_head_stride);
  return p;
}

void row_strides(const Tensor& t, bool varlen, int64_t& batch_stride, int64_t& row_stride,
                 int64_t& head_stride) {
  batch_stride = varlen ? 0 : t.stride(0);
  row_stride = t.stride(varlen ? 0 : 1);
  head_stride = t.stride(varlen ? 1 : 2);
}

void set_out_lse(AttnParams& p, const AttnArgs& a, const Tensor& out, const Tensor& lse,
                 const char* out_name, const char* lse_name) {
  const std::vector<int64_t> os = out_shape(a), ls = lse_shape(a);
  check_dtype(out, out_name, a.q.scalar_type());
  check_same_device(out, out_name, a.q, "q");
  check_dim(out, out_name, static_cast<int64_t>(os.size()), "tensor shaped like q with head_dim_v");
  for (size_t i = 0; i < os.size(); ++i) check_size(out, out_name, i, os[i], "as q, with head_dim_v");
  check_last_dim_contiguous(out, out_name);
  check_dtype(lse, lse_name, ScalarType::Float);
  check_same_device(lse, lse_name, a.q, "q");
  check_dim(lse, lse_name, static_cast<int64_t>(ls.size()),
            a.cu_seqlens_q ? "(heads, total_q)" : "(batch, heads, seqlen_q)");
  for (size_t i = 0; i < ls.size(); ++i) check_size(lse, lse_name, i, ls[i], "as q");
  FA4_CHECK(lse.stride(-1) == 1 || lse.size(-1) <= 1, lse_name, " must have a contiguous last dimension");

  const bool q_varlen = a.cu_seqlens_q.has_value();
  p.out = out.mutable_data_ptr();
  row_strides(out, q_varlen, p.o_batch_stride, p.o_row_stride, p.o_head_stride);
  p.lse = lse.mutable_data_ptr<float>();
  p.lse_batch_stride = q_varlen ? 0 : lse.stride(0);
  p.lse_head_stride = lse.stride(q_varlen ? 0 : 1);
}

}  // namespace fa4::api
