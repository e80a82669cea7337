// CPU kernels: the executable specification the GPU kernels are tested against, and what CPU users
// run. The same tiled algorithm as the GPU: query blocks of kBlockM rows stream key blocks of kBlockN
// keys through the shared online-softmax update (common/softmax.h) with the shared mask predicates
// (common/mask.h); the backward recomputes P from lse and uses D = rowsum(dO * O).
#include <torch/csrc/stable/ops.h>
#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "api/backends.h"
#include "common/mask.h"
#include "common/softmax.h"

namespace fa4::cpu {
namespace {

constexpr int kBlockM = 16;
constexpr int kBlockN = 64;

// Accumulation type: fp32 for 16-bit and fp32 inputs (as on the GPU), fp64 for fp64 (gradcheck).
template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

template <typename Acc, typename T>
Acc dot(const T* a, const T* b, int n) {
  Acc s = 0;
  for (int i = 0; i < n; ++i) s += static_cast<Acc>(a[i]) * static_cast<Acc>(b[i]);
  return s;
}

// Score of (row, key) in log2 units after scaling and softcap; -inf where the mask hides the key.
template <typename Acc>
Acc score_log2(Acc qk, const AttnParams& p, const MaskSpec& mask, int row, int col, Acc* capped) {
  const Acc s = apply_softcap<Acc>(qk * Acc(p.softmax_scale), Acc(p.softcap));
  if (capped) *capped = s;
  return mask.visible(row, col) ? s * Acc(kLog2e) : Acc(-INFINITY);
}

template <typename T>
void fwd_tile(const AttnParams& p, int b, int h, int row_begin, int row_end) {
  using Acc = typename AccOf<T>::type;
  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k);
  const T* v = static_cast<const T*>(p.v);
  T* out = static_cast<T*>(p.out);
  const int h_kv = h / (p.heads_q / p.heads_kv);
  const int len_q = p.q_len(b), len_k = p.k_len(b);
  const int d = p.head_dim, dv = p.head_dim_v;
  const MaskSpec mask = make_mask(len_q, len_k, p.causal, p.window_left, p.window_right);
  // Rows past the sequence's used length are not attention rows: they read as "sees no key".
  const int valid_end = std::min(row_end, len_q);

  RowSoftmaxState<Acc> state[kBlockM];
  std::vector<Acc> acc(static_cast<size_t>(kBlockM) * dv, Acc(0));
  Acc scores[kBlockM][kBlockN];
  for (auto& s : state) s.init();

  int col_begin = 0, col_end = 0;
  if (row_begin < valid_end) mask.key_range(row_begin, valid_end, &col_begin, &col_end);
  for (int n0 = col_begin - col_begin % kBlockN; n0 < col_end; n0 += kBlockN) {
    const int n1 = std::min(n0 + kBlockN, len_k);
    for (int r = row_begin; r < valid_end; ++r) {
      const int m = r - row_begin;
      const T* q_row = q + p.q_offset(b, r, h);
      Acc block_max = -INFINITY;
      for (int c = n0; c < n1; ++c) {
        const Acc qk = dot<Acc>(q_row, k + p.k_offset(b, c, h_kv), d);
        scores[m][c - n0] = score_log2<Acc>(qk, p, mask, r, c, nullptr);
        block_max = std::max(block_max, scores[m][c - n0]);
      }
      Acc* acc_row = acc.data() + static_cast<size_t>(m) * dv;
      const Acc rescale = state[m].update_max(block_max, Acc(kRescaleThresholdLog2));
      if (rescale != Acc(1))
        for (int j = 0; j < dv; ++j) acc_row[j] *= rescale;
      const Acc row_max = state[m].max_for_exp();
      for (int c = n0; c < n1; ++c) {
        const Acc prob = std::exp2(scores[m][c - n0] - row_max);
        if (prob == Acc(0)) continue;
        state[m].row_sum += prob;
        const T* v_row = v + p.v_offset(b, c, h_kv);
        for (int j = 0; j < dv; ++j) acc_row[j] += prob * static_cast<Acc>(v_row[j]);
      }
    }
  }

  for (int r = row_begin; r < row_end; ++r) {
    const int m = r - row_begin;
    Acc* acc_row = acc.data() + static_cast<size_t>(m) * dv;
    if (p.learnable_sink && r < valid_end) {
      const Acc rescale = state[m].add_sink(Acc(p.learnable_sink[h]) * Acc(kLog2e));
      for (int j = 0; j < dv; ++j) acc_row[j] *= rescale;
    }
    const Acc inv_sum = state[m].inv_sum();
    T* out_row = out + p.o_offset(b, r, h);
    for (int j = 0; j < dv; ++j) out_row[j] = static_cast<T>(acc_row[j] * inv_sum);
    p.lse[p.lse_offset(b, r, h)] = static_cast<float>(state[m].lse());
  }
}

// Rows of a varlen q that belong to no sequence (past cu_seqlens_q[batch]) are written as
// "sees no key" too, so that every element of out and lse is defined.
template <typename T>
void fwd_trailing_rows(const AttnParams& p) {
  if (!p.cu_seqlens_q) return;
  T* out = static_cast<T*>(p.out);
  for (int r = p.cu_seqlens_q[p.batch]; r < p.total_q; ++r)
    for (int h = 0; h < p.heads_q; ++h) {
      T* out_row = out + AttnParams::row_offset(nullptr, 0, r, h, 0, p.o_row_stride, p.o_head_stride);
      for (int j = 0; j < p.head_dim_v; ++j) out_row[j] = static_cast<T>(0);
      p.lse[static_cast<int64_t>(h) * p.lse_head_stride + r] = -INFINITY;
    }
}

// Rows each batch entry owns in out/lse: the padded length when batched, the cu_seqlens span when
// varlen (seqused_q may use fewer).
int owned_rows(const AttnParams& p, int b) {
  return p.cu_seqlens_q ? p.cu_seqlens_q[b + 1] - p.cu_seqlens_q[b] : p.seqlen_q;
}

template <typename T>
void fwd(const AttnParams& p) {
  const int m_blocks = (p.seqlen_q + kBlockM - 1) / kBlockM;
  const int64_t items = static_cast<int64_t>(p.batch) * p.heads_q * m_blocks;
  torch::stable::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int mb = static_cast<int>(i % m_blocks);
      const int h = static_cast<int>((i / m_blocks) % p.heads_q);
      const int b = static_cast<int>(i / (static_cast<int64_t>(m_blocks) * p.heads_q));
      const int rows = owned_rows(p, b);
      const int row_begin = mb * kBlockM;
      if (row_begin < rows) fwd_tile<T>(p, b, h, row_begin, std::min(row_begin + kBlockM, rows));
    }
  });
  fwd_trailing_rows<T>(p);
}

// Backward for one (batch entry, kv head): owns dK/dV of that head and dQ of its query heads, so
// work items never write the same element (deterministic without atomics).
template <typename T>
void bwd_item(const AttnBwdParams& p, int b, int h_kv, std::vector<double>& dsink_partial) {
  using Acc = typename AccOf<T>::type;
  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k);
  const T* v = static_cast<const T*>(p.v);
  const T* o = static_cast<const T*>(p.out);
  const T* dout = static_cast<const T*>(p.dout);
  T* dq = static_cast<T*>(p.dq);
  T* dk = static_cast<T*>(p.dk);
  T* dv = static_cast<T*>(p.dv);
  const int group = p.heads_q / p.heads_kv;
  const int len_q = p.q_len(b), len_k = p.k_len(b);
  const int d = p.head_dim, d_v = p.head_dim_v;
  const MaskSpec mask = make_mask(len_q, len_k, p.causal, p.window_left, p.window_right);
  const Acc scale = Acc(p.softmax_scale);

  std::vector<Acc> dk_acc(static_cast<size_t>(len_k) * d, Acc(0));
  std::vector<Acc> dv_acc(static_cast<size_t>(len_k) * d_v, Acc(0));
  std::vector<Acc> dq_acc(d);
  for (int h = h_kv * group; h < (h_kv + 1) * group; ++h) {
    for (int r = 0; r < len_q; ++r) {
      const float lse = p.lse[p.lse_offset(b, r, h)];
      if (lse == -INFINITY) continue;  // the row saw nothing: every gradient through it is 0
      const T* q_row = q + p.q_offset(b, r, h);
      const T* o_row = o + p.o_offset(b, r, h);
      const T* do_row = dout + p.do_offset(b, r, h);
      // D = rowsum(dO * O), minus dlse when lse itself has a gradient.
      const Acc row_d = dot<Acc>(do_row, o_row, d_v) - (p.dlse ? Acc(p.dlse[p.lse_offset(b, r, h)]) : Acc(0));
      const Acc lse_log2 = Acc(lse) * Acc(kLog2e);
      std::fill(dq_acc.begin(), dq_acc.end(), Acc(0));
      int col_begin, col_end;
      mask.key_range(r, r + 1, &col_begin, &col_end);
      for (int n0 = col_begin; n0 < col_end; n0 += kBlockN) {
        for (int c = n0; c < std::min(n0 + kBlockN, col_end); ++c) {
          const T* k_row = k + p.k_offset(b, c, h_kv);
          Acc capped;
          const Acc s = score_log2<Acc>(dot<Acc>(q_row, k_row, d), p, mask, r, c, &capped);
          const Acc prob = std::exp2(s - lse_log2);
          if (prob == Acc(0)) continue;
          const T* v_row = v + p.v_offset(b, c, h_kv);
          const Acc dp = dot<Acc>(do_row, v_row, d_v);
          const Acc ds = prob * (dp - row_d) * softcap_grad<Acc>(capped, Acc(p.softcap)) * scale;
          for (int j = 0; j < d; ++j) {
            dq_acc[j] += ds * static_cast<Acc>(k_row[j]);
            dk_acc[static_cast<size_t>(c) * d + j] += ds * static_cast<Acc>(q_row[j]);
          }
          for (int j = 0; j < d_v; ++j)
            dv_acc[static_cast<size_t>(c) * d_v + j] += prob * static_cast<Acc>(do_row[j]);
        }
      }
      T* dq_row = dq + p.dq_offset(b, r, h);
      for (int j = 0; j < d; ++j) dq_row[j] = static_cast<T>(dq_acc[j]);
      // d lse / d sink = P(sink); dL/dsink = -P(sink) * D.
      if (p.dsink)
        dsink_partial[h - h_kv * group] -=
            std::exp2((double(p.learnable_sink[h]) - double(lse)) * double(kLog2e)) * double(row_d);
    }
  }
  for (int c = 0; c < len_k; ++c) {
    T* dk_row = dk + p.dk_offset(b, c, h_kv);
    T* dv_row = dv + p.dv_offset(b, c, h_kv);
    for (int j = 0; j < d; ++j) dk_row[j] = static_cast<T>(dk_acc[static_cast<size_t>(c) * d + j]);
    for (int j = 0; j < d_v; ++j) dv_row[j] = static_cast<T>(dv_acc[static_cast<size_t>(c) * d_v + j]);
  }
}

template <typename T>
void bwd(const AttnBwdParams& p) {
  const int group = p.heads_q / p.heads_kv;
  const int64_t items = static_cast<int64_t>(p.batch) * p.heads_kv;
  // Per-item dsink partials, summed in a fixed order afterwards: deterministic.
  std::vector<std::vector<double>> dsink_partial(items, std::vector<double>(group, 0.0));
  torch::stable::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      bwd_item<T>(p, static_cast<int>(i / p.heads_kv), static_cast<int>(i % p.heads_kv), dsink_partial[i]);
  });
  if (p.dsink) {
    for (int h = 0; h < p.heads_q; ++h) {
      double total = 0;
      for (int b = 0; b < p.batch; ++b)
        total += dsink_partial[static_cast<int64_t>(b) * p.heads_kv + h / group][h % group];
      p.dsink[h] = static_cast<float>(total);
    }
  }
}

template <template <typename> class Fn, typename P>
void dispatch(const P& p) {
  switch (p.dtype) {
    case DType::kFloat16: return Fn<c10::Half>::run(p);
    case DType::kBFloat16: return Fn<c10::BFloat16>::run(p);
    case DType::kFloat32: return Fn<float>::run(p);
    case DType::kFloat64: return Fn<double>::run(p);
  }
}
template <typename T> struct Fwd { static void run(const AttnParams& p) { fwd<T>(p); } };
template <typename T> struct Bwd { static void run(const AttnBwdParams& p) { bwd<T>(p); } };

}  // namespace

void run_fwd(const AttnParams& params) { dispatch<Fwd>(params); }
void run_bwd(const AttnBwdParams& params) { dispatch<Bwd>(params); }

}  // namespace fa4::cpu
