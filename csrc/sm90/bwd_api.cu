// bwd_unsupported_reason / bwd_workspace_bytes / run_bwd: validation, scratch layout, and the three
// stages of the sm90 backward:
//   1. preprocess: D = rowsum(dO o O) - dlse and lse * log2(e) per query row into scratch rows;
//      it also zeroes the rows' semaphore and claim slots (the workspace comes unfilled; the dQ
//      accumulator is written by the main kernel, a store first in each query block)
//   2. main kernel (instantiations/bwd_*): dK, dV, and dQ summed into the fp32 accumulator. A
//      programmatic dependent launch: its CTAs take the SMs the preprocess's last blocks leave,
//      set up and load K / V, and wait (griddepcontrol.wait) for the whole preprocess before
//      anything reads its outputs
//   3. postprocess: dQ = accumulator * softmax_scale in q's dtype; dsink reduced per head in a
//      fixed order (deterministic in both modes). The dQ convert is a programmatic dependent
//      launch: its blocks start once every main-kernel CTA has started, on the SMs the last wave
//      leaves idle, and each waits only for the key blocks of its own (batch, head) (dq_done).
#include <stdint.h>

#include <algorithm>
#include <cstdlib>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/softmax.h"
#include "sm90/bwd_dispatch.h"
#include "sm90/bwd_launch.h"
#include "sm90/gmem_layout.h"
#include "sm90/variant_dispatch.h"

namespace fa4::sm90 {

namespace {

constexpr int kMinBlockM = 64;  // smallest kBlockM of the table: sizes the semaphore array

struct WorkspaceLayout {
  size_t dq_accum, lse_log2, dpsum, semaphore, dq_claim, dq_done, dk_partial, dv_partial, total;
  int head_splits;
  int64_t key_rows;
};

size_t align256(size_t x) { return (x + 255) / 256 * 256; }

// CTAs per (key block, kv head) that share a GQA group's query heads. The main kernel's grid is
// one CTA per (key block, kv head, batch), each looping over the group's heads: with few kv heads
// (MQA, small batch) that leaves SMs idle (H100, d 128, b 1, s 2k, 32 query heads on one kv head:
// 16 CTAs, 81 TFLOP/s against cuDNN's 461; bench/probe_gqa.py). Picks the split count that
// minimises a time model in units of one (query head, query block) iteration (~10 MFLOP at every
// tile config of the table). A CTA costs its iterations plus kFixed (prologue, epilogue) plus,
// when split, its fp32 dK / dV partials written and read back by the reduction (2 x 4 bytes x
// kBlockN x (d + d_v) at ~1/132 of HBM bandwidth: ~kBlockN (d + d_v) / 8192 iterations). Every CTA
// costs the same without a mask: whole waves of the longest CTA. Under causal / window masks the
// CTAs of a (kv head, batch) start heaviest first, in blockIdx order, so the last group's heaviest
// CTA starts once the other groups' work is spread over the SMs and ends `longest` later; and
// even a balanced spread ends ragged, by about half the longest CTA. Checked against forced
// counts (bench/probe_gqa.py --splits, H100, d 64 / 128, causal, 4-8k): the pick is the fastest
// count or within 7% of it where the timings are not host-bound.
int head_splits_for(const AttnBwdParams& a, int block_n, int block_m) {
  const int group = a.heads_q / a.heads_kv;
  if (group <= 1 || a.seqlen_k == 0 || a.seqlen_q == 0) return 1;
  const int64_t n_blocks = (a.seqlen_k + block_n - 1) / block_n;
  auto fits = [&](int s) { return group % s == 0 && n_blocks * s <= INT32_MAX; };  // grid.x
  // FA4_BWD_HEAD_SPLITS=n (tests and benchmarks: both paths on any GPU) forces the largest split
  // count <= n that the model below could also pick; it changes the speed and the order of the
  // fp32 dK / dV sums, nothing else.
  if (const char* env = std::getenv("FA4_BWD_HEAD_SPLITS"); env != nullptr && env[0] != '\0') {
    int s = std::min(std::max(std::atoi(env), 1), group);
    while (!fits(s)) --s;
    return s;
  }
  int device = 0, sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || sms <= 0)
    return 1;
  const int64_t ctas = n_blocks * a.heads_kv * a.batch;
  const double m_blocks = (a.seqlen_q + block_m - 1) / block_m;
  // Query blocks an average key block sees: all without a mask, about half under causal / window.
  const bool uniform = !a.causal && a.window_left < 0 && a.window_right < 0;
  const double m_avg = uniform ? m_blocks : 0.5 * m_blocks;
  constexpr double kFixed = 2.0;
  const double partial = block_n * double(a.head_dim + a.head_dim_v) / 8192.0;
  int best = 1;
  double best_time = 0.0;
  for (int s = 1; s <= group; ++s) {
    if (!fits(s)) continue;  // equal shares: a cheap head range in the kernel
    const int heads = group / s;
    const int64_t n = ctas * s;
    const double extra = kFixed + (s > 1 ? partial : 0.0);
    const double longest = heads * m_blocks + extra;
    double time;
    if (uniform) {
      time = double((n + sms - 1) / sms) * longest;
    } else {
      const double total = n * (heads * m_avg + extra);
      const double per_group = n_blocks * s * (heads * m_avg + extra);
      time = std::max(total / sms + 0.5 * longest, (total - per_group) / sms + longest);
    }
    // A split must win by 5%: the model ignores the reduction's launch and L2 effects.
    if (s == 1 || time < 0.95 * best_time) best = s, best_time = time;
  }
  return best;
}

WorkspaceLayout workspace_layout(const AttnBwdParams& a) {
  const size_t rows = size_t(a.heads_q) * size_t(BwdScratch::rows_per_head_of(a));
  const size_t m_blocks = (size_t(a.seqlen_q) + kMinBlockM - 1) / kMinBlockM;
  WorkspaceLayout w;
  w.head_splits = 1;
#define FA4_SM90_BWD_SPLITS(D, DV, BN, BM, ST, PP) \
  if (a.head_dim == D && a.head_dim_v == DV) w.head_splits = head_splits_for(a, BN, BM);
  FA4_SM90_BWD_HDIM_TABLE(FA4_SM90_BWD_SPLITS)
#undef FA4_SM90_BWD_SPLITS
  w.key_rows = a.cu_seqlens_k != nullptr ? int64_t(a.total_k) : int64_t(a.batch) * a.seqlen_k;
  const size_t partial_rows =
      w.head_splits > 1 ? size_t(a.heads_kv) * w.head_splits * size_t(w.key_rows) : 0;
  w.dq_accum = 0;
  w.lse_log2 = align256(w.dq_accum + rows * a.head_dim * sizeof(float));
  w.dpsum = align256(w.lse_log2 + rows * sizeof(float));
  w.semaphore = align256(w.dpsum + rows * sizeof(float));
  w.dq_claim = align256(w.semaphore + size_t(a.batch) * a.heads_q * m_blocks * sizeof(int32_t));
  w.dq_done = align256(w.dq_claim + size_t(a.batch) * a.heads_q * m_blocks * sizeof(int32_t));
  w.dk_partial = align256(w.dq_done + size_t(a.batch) * a.heads_q * sizeof(int32_t));
  w.dv_partial = align256(w.dk_partial + partial_rows * a.head_dim * sizeof(float));
  w.total = align256(w.dv_partial + partial_rows * a.head_dim_v * sizeof(float));
  return w;
}

template <typename T>
__device__ float to_float(T x) {
  return static_cast<float>(x);
}

// Lanes that share one row of `cols` columns, 8 columns each (16-byte loads of O / dO, 16-byte
// stores of dq): cols / 8 rounded up to a power of two (a warp takes 32 / lanes rows). One warp
// per row left half or more of the lanes idle at d <= 128 and the preprocess ran at 0.8-1.6 TB/s
// (H200, bench/kernel_times.py).
__host__ __device__ inline int lanes_per_row(int cols) {
  int lanes = 1;
  while (lanes < 32 && lanes * 8 < cols) lanes *= 2;
  return lanes;
}

// Scratch rows: rows of a sequence get D and lse * log2(e); the padding rows up to the
// next multiple of kAlignRows get D = 0 and lse = +inf (P = 0 there), and each 64-row group's
// semaphore and claim slots are zeroed: a pass over the same rows instead of a memset of the
// workspace. The dQ accumulator is not zeroed (half of this pass's traffic): in each query block
// the main kernel's first claimer stores instead of adding, and the convert writes zeros where no
// key block came (dq_block_visited).
template <typename T>
__global__ void bwd_preprocess(AttnBwdParams a, BwdScratch s) {
  const int lanes = lanes_per_row(a.head_dim_v);
  const int lane = threadIdx.x % 32, sub = lane % lanes;
  const int warp_row0 = (blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32) * (32 / lanes);
  const int row = warp_row0 + lane / lanes;
  const int head = blockIdx.y, batch = blockIdx.z;
  // The main kernel may be scheduled once every block of this grid has started; it waits for the
  // grid's end before it reads what this kernel writes.
  asm volatile("griddepcontrol.launch_dependents;");
  if (blockIdx.x == 0 && threadIdx.x == 0) s.dq_done[int64_t(batch) * a.heads_q + head] = 0;
  const int q_len = a.q_len(batch);
  const int padded = (q_len + BwdScratch::kAlignRows - 1) / BwdScratch::kAlignRows *
                     BwdScratch::kAlignRows;
  // Each lane holds at most one 8-column chunk of the row (lanes * 8 >= head_dim_v for every
  // head_dim_v <= 256).
  uint4 ov = make_uint4(0, 0, 0, 0), dv = make_uint4(0, 0, 0, 0);  // zeros add nothing to d
  if (row < q_len && sub * 8 < a.head_dim_v) {
    ov = *reinterpret_cast<const uint4*>(static_cast<const T*>(a.out) +
                                         a.o_offset(batch, row, head) + sub * 8);
    dv = *reinterpret_cast<const uint4*>(static_cast<const T*>(a.dout) +
                                         a.do_offset(batch, row, head) + sub * 8);
  }
  if (s.dq_zeroed && row < padded) {
    float4* acc = reinterpret_cast<float4*>(s.dq_accum + s.row_index(a, batch, head, row) * a.head_dim);
    for (int c = sub; c < a.head_dim / 4; c += lanes) acc[c] = make_float4(0.f, 0.f, 0.f, 0.f);
  }
  float d = 0.f;
  {
    const T* oe = reinterpret_cast<const T*>(&ov);
    const T* de = reinterpret_cast<const T*>(&dv);
#pragma unroll
    for (int j = 0; j < 8; ++j) d += to_float(oe[j]) * to_float(de[j]);
  }
  // Sum over the row's lanes (aligned groups of `lanes`); every lane of the warp takes part.
  for (int off = lanes / 2; off > 0; off /= 2) d += __shfl_xor_sync(0xffffffff, d, off);
  if (row >= padded || sub != 0) return;
  if (row % kMinBlockM == 0 && row / kMinBlockM < s.m_blocks) {
    const int64_t slot = (int64_t(batch) * a.heads_q + head) * s.m_blocks + row / kMinBlockM;
    s.semaphore[slot] = 0;
    s.dq_claim[slot] = 0;
  }
  float lse_log2 = INFINITY;
  if (row < q_len) {
    const int64_t l = a.lse_offset(batch, row, head);
    if (a.dlse) d -= a.dlse[l];
    const float lse = a.lse[l];
    lse_log2 = lse == -INFINITY ? INFINITY : lse * kLog2e;
  }
  const int64_t i = s.row_index(a, batch, head, row);
  s.dpsum[i] = d;
  s.lse_log2[i] = lse_log2;
}

// What a dQ convert block of (batch, head) waits for before it reads dq_accum: every key-block
// CTA of the main kernel that adds into the head's rows has counted itself in dq_done (after its
// bulk reduce-adds completed), i.e. the key blocks the main kernel does not skip
// (key_block_rows, the kernel's own test).
struct DqReady {
  int block_n;  // the main kernel's kBlockN
  int block_m;  // its kBlockM
  bool local;   // its kIsLocal (has_local_mask)
};
// Whether the main kernel wrote query block m's dq_accum rows (dq_block_visited): else they hold
// whatever the workspace held, and dq is 0 there.
__device__ bool dq_block_written(const AttnBwdParams& a, int batch, int m, DqReady r) {
  const int q_len = a.q_len(batch), k_len = a.k_len(batch);
  const MaskSpec mask = make_mask(q_len, k_len, a.causal, a.window_left, a.window_right);
  return dq_block_visited(mask, q_len, k_len, m, r.block_m, r.local);
}
__device__ int dq_contributors(const AttnBwdParams& a, int batch, DqReady r) {
  const int q_len = a.q_len(batch), k_len = a.k_len(batch);
  const MaskSpec mask = make_mask(q_len, k_len, a.causal, a.window_left, a.window_right);
  int count = 0;
  for (int n0 = 0; n0 < k_len; n0 += r.block_n) {
    int lo, hi;
    count += key_block_rows(mask, q_len, k_len, n0, r.block_n, r.local, &lo, &hi);
  }
  return count;
}
// Called by the whole block, which has rows to convert.
__device__ void wait_dq_ready(const AttnBwdParams& a, const BwdScratch& s, int batch, int head,
                              DqReady r) {
  if (threadIdx.x == 0) {
    const int32_t* done = s.dq_done + int64_t(batch) * a.heads_q + head;
    const int expected = dq_contributors(a, batch, r);
    for (;;) {
      int v;
      asm volatile("ld.acquire.gpu.global.s32 %0, [%1];" : "=r"(v) : "l"(done) : "memory");
      if (v >= expected) break;
      __nanosleep(256);
    }
  }
  __syncthreads();
}
// The convert grid may end only once the main kernel has (its dK / dV are read by what follows
// on the stream; a programmatic dependent grid could otherwise complete before its primary): its
// last block waits for it. Not every block: blocks parked at the end would hold their SMs, and
// the rest of the convert could not start until the main kernel ended.
__device__ void wait_main_kernel_if_last_block() {
  if (threadIdx.x == 0 && blockIdx.x == gridDim.x - 1 && blockIdx.y == gridDim.y - 1 &&
      blockIdx.z == gridDim.z - 1)
    asm volatile("griddepcontrol.wait;" ::: "memory");
}

// dq = dq_accum * softmax_scale (row-major dq_accum, dq_wg_cols == 0): head_dim / 8 lanes per row
// (a power of two, several rows per warp), each converting 8 columns (one permuted 8-float chunk)
// into one 16-byte store (dq is allocated by the op: contiguous, 16-byte aligned rows).
template <typename T>
__global__ void bwd_convert_dq(AttnBwdParams a, BwdScratch s, DqReady ready) {
  const int lanes = lanes_per_row(a.head_dim);
  const int lane = threadIdx.x % 32, sub = lane % lanes;
  const int rows_per_block = (blockDim.x / 32) * (32 / lanes);
  const int row = (blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32) * (32 / lanes) + lane / lanes;
  const int head = blockIdx.y, batch = blockIdx.z;
  wait_main_kernel_if_last_block();
  if (int(blockIdx.x) * rows_per_block < a.q_len(batch)) wait_dq_ready(a, s, batch, head, ready);
  if (row >= a.q_len(batch)) return;
  const float* acc = s.dq_accum + s.row_index(a, batch, head, row) * a.head_dim;
  T* dq = static_cast<T*>(a.dq) + a.dq_offset(batch, row, head);
  if (!dq_block_written(a, batch, row / ready.block_m, ready)) {
    for (int c = sub * 8; c < a.head_dim; c += lanes * 8)
      *reinterpret_cast<uint4*>(dq + c) = make_uint4(0, 0, 0, 0);
    return;
  }
  for (int c = sub * 8; c < a.head_dim; c += lanes * 8) {
    const float* chunk = acc + BwdScratch::dq_accum_col(row, c);
    const float4 lo = *reinterpret_cast<const float4*>(chunk);
    const float4 hi = *reinterpret_cast<const float4*>(chunk + 4);
    const float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
    alignas(16) T out[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) out[j] = T(v[j] * a.softmax_scale);
    *reinterpret_cast<uint4*>(dq + c) = *reinterpret_cast<const uint4*>(out);
  }
}

// The same for fragment-order dq_accum (dq_wg_cols = N > 0): one block per (64-row block,
// warpgroup chunk of 64 x N); the chunk is read with coalesced 16-byte loads into shared memory,
// then each thread converts 8 columns of a row (4 pairs 16 bytes apart there) into one 16-byte
// store, N / 8 consecutive threads per row. Measured at d = 128, 1k (H200): 57 us (61 with a
// 32 KiB buffer), against 73 us reading the pairs in place from global memory, 94 us with each
// thread reading 4 consecutive float4 (2 rows x 8 columns) in place, and 50 us for the row-major
// layout's convert.
constexpr int kConvertFragThreads = 256;
constexpr int kConvertFragMaxCols = 64;
template <typename T>
__global__ void __launch_bounds__(kConvertFragThreads)
    bwd_convert_dq_frag(AttnBwdParams a, BwdScratch s, DqReady ready) {
  __shared__ float4 chunk[64 * kConvertFragMaxCols / 4];
  const int n = s.dq_wg_cols;
  const int block = blockIdx.x / 2, w = blockIdx.x % 2;
  const int head = blockIdx.y, batch = blockIdx.z;
  const int row0 = block * 64;
  const int rows = min(64, a.q_len(batch) - row0);
  wait_main_kernel_if_last_block();
  if (rows <= 0) return;
  if (!dq_block_written(a, batch, row0 / ready.block_m, ready)) {  // block-uniform
    const int groups = n / 8;
    for (int item = threadIdx.x; item < rows * groups; item += kConvertFragThreads) {
      T* dq = static_cast<T*>(a.dq) +
              a.dq_offset(batch, row0 + item / groups, head) + w * n + (item % groups) * 8;
      *reinterpret_cast<uint4*>(dq) = make_uint4(0, 0, 0, 0);
    }
    return;
  }
  wait_dq_ready(a, s, batch, head, ready);
  const float4* src = reinterpret_cast<const float4*>(
      s.dq_accum + s.row_index(a, batch, head, row0) * a.head_dim + int64_t(w) * 64 * n);
  for (int i = threadIdx.x; i < 16 * n; i += kConvertFragThreads) chunk[i] = src[i];
  __syncthreads();
  const float* f = reinterpret_cast<const float*>(chunk);
  const int groups = n / 8;
  for (int item = threadIdx.x; item < rows * groups; item += kConvertFragThreads) {
    const int row = item / groups, c = (item % groups) * 8;
    alignas(16) T out[8];
#pragma unroll
    for (int j = 0; j < 8; j += 2) {
      const float2 pair =
          *reinterpret_cast<const float2*>(f + BwdScratch::dq_frag_index(row, c + j));
      out[j] = T(pair.x * a.softmax_scale);
      out[j + 1] = T(pair.y * a.softmax_scale);
    }
    T* dq = static_cast<T*>(a.dq) + a.dq_offset(batch, row0 + row, head) + w * n + c;
    *reinterpret_cast<uint4*>(dq) = *reinterpret_cast<const uint4*>(out);
  }
}

// dsink[h] = -sum over rows of P(sink) * D, one block per head; each thread sums a fixed set of
// rows and the block reduces in a fixed tree: the same bits on every run.
__global__ void bwd_dsink(AttnBwdParams a, BwdScratch s) {
  constexpr int kThreads = 256;
  __shared__ float partial[kThreads];
  const int head = blockIdx.x;
  const float sink_log2 = a.learnable_sink[head] * kLog2e;
  float sum = 0.f;
  for (int b = 0; b < a.batch; ++b) {
    const int q_len = a.q_len(b);
    for (int r = threadIdx.x; r < q_len; r += kThreads) {
      const int64_t i = s.row_index(a, b, head, r);
      sum += exp2f(sink_log2 - s.lse_log2[i]) * s.dpsum[i];
    }
  }
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) partial[threadIdx.x] += partial[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) a.dsink[head] = -partial[0];
}

// head_splits > 1: dK / dV = the splits' fp32 sums added in split order, in the gradients' dtype.
// One thread per 4 columns of a key row; grid (row groups, heads_kv, batch). Key blocks that no
// query sees wrote no partials (the main kernel's early return, key_block_rows): zeros there.
template <typename T>
__global__ void bwd_reduce_dkv(AttnBwdParams a, BwdScratch s, int cols, bool is_v, int block_n,
                               bool local) {
  const int quads = cols / 4;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int row = int(i / quads), c = int(i % quads) * 4;
  const int head_kv = blockIdx.y, batch = blockIdx.z;
  const int q_len = a.q_len(batch), k_len = a.k_len(batch);
  if (row >= k_len) return;
  int row_lo, row_hi;
  const bool written =
      key_block_rows(make_mask(q_len, k_len, a.causal, a.window_left, a.window_right), q_len,
                     k_len, row / block_n * block_n, block_n, local, &row_lo, &row_hi);
  float4 sum = make_float4(0.f, 0.f, 0.f, 0.f);
  const float* partial = is_v ? s.dv_partial : s.dk_partial;
  for (int split = 0; split < s.head_splits && written; ++split) {
    const float4 x = *reinterpret_cast<const float4*>(
        partial + s.partial_row(a, batch, row, head_kv * s.head_splits + split) * cols + c);
    sum.x += x.x, sum.y += x.y, sum.z += x.z, sum.w += x.w;
  }
  T* dst = static_cast<T*>(is_v ? a.dv : a.dk) +
           (is_v ? a.dv_offset(batch, row, head_kv) : a.dk_offset(batch, row, head_kv)) + c;
  // One 8-byte store (gradients are 16-byte aligned with row strides a multiple of 8 elements).
  const T out[4] = {T(sum.x), T(sum.y), T(sum.z), T(sum.w)};
  *reinterpret_cast<uint2*>(dst) = *reinterpret_cast<const uint2*>(out);
}

// bwd_preprocess's one chunk per lane needs lanes_per_row(head_dim_v) * 8 >= head_dim_v.
#define FA4_SM90_BWD_PRE_DV(D, DV, BN, BM, ST, PP) \
  static_assert(DV <= 256, "bwd_preprocess reads one 8-column chunk per lane");
FA4_SM90_BWD_HDIM_TABLE(FA4_SM90_BWD_PRE_DV)
#undef FA4_SM90_BWD_PRE_DV

template <typename T>
cudaError_t run_bwd_typed(const AttnBwdParams& a, const BwdScratch& s, cudaStream_t stream) {
  constexpr int kWarpsPerBlock = 8;
  const int padded = (a.seqlen_q + BwdScratch::kAlignRows - 1) / BwdScratch::kAlignRows *
                     BwdScratch::kAlignRows;
  const int convert_rows = kWarpsPerBlock * (32 / lanes_per_row(a.head_dim));
  const dim3 grid((padded + convert_rows - 1) / convert_rows, a.heads_q, a.batch);
  const int pre_rows = kWarpsPerBlock * (32 / lanes_per_row(a.head_dim_v));
  const dim3 pre_grid((padded + pre_rows - 1) / pre_rows, a.heads_q, a.batch);
  if (pre_grid.x > 0) bwd_preprocess<T><<<pre_grid, 32 * kWarpsPerBlock, 0, stream>>>(a, s);
  if (cudaError_t err = cudaGetLastError(); err != cudaSuccess) return err;
  cudaError_t err = cudaErrorNotSupported;
#define FA4_SM90_BWD_DISPATCH(D, DV, BN, BM, ST, PP) \
  if (a.head_dim == D && a.head_dim_v == DV) err = run_bwd_hdim<T, D, DV>(a, s, stream);
  FA4_SM90_BWD_HDIM_TABLE(FA4_SM90_BWD_DISPATCH)
#undef FA4_SM90_BWD_DISPATCH
  if (err != cudaSuccess) return err;
  int block_n = 0, block_m = 0;  // the main kernel's kBlockN, kBlockM
#define FA4_SM90_BWD_BLOCK_NM(D, DV, BN, BM, ST, PP) \
  if (a.head_dim == D && a.head_dim_v == DV) block_n = BN, block_m = BM;
  FA4_SM90_BWD_HDIM_TABLE(FA4_SM90_BWD_BLOCK_NM)
#undef FA4_SM90_BWD_BLOCK_NM
  const DqReady ready{block_n, block_m, has_local_mask(a)};
  // Programmatic dependent launch of the convert (see the top of this file);
  // FA4_BWD_SERIAL_CONVERT=1 launches it after the main kernel instead (A/B, debugging). Only
  // after a main kernel (launch_bwd launches none without keys): the preprocess triggers its
  // dependents at its start, and the convert reads what the preprocess writes (dq_done, and
  // nothing else without keys: it writes zeros); main-kernel CTAs trigger only once the
  // preprocess has ended.
  const char* serial = std::getenv("FA4_BWD_SERIAL_CONVERT");
  const bool pdl = a.seqlen_k > 0 && !(serial != nullptr && serial[0] == '1');  // a main kernel ran
  cudaLaunchAttribute attr;
  if (s.dq_wg_cols > 0) {
    const cudaLaunchConfig_t cfg = launch_config(dim3(padded / 64 * 2, a.heads_q, a.batch),
                                                 dim3(kConvertFragThreads), 0, stream, pdl, &attr);
    if (cfg.gridDim.x > 0) err = cudaLaunchKernelEx(&cfg, bwd_convert_dq_frag<T>, a, s, ready);
  } else if (grid.x > 0) {
    const cudaLaunchConfig_t cfg =
        launch_config(grid, dim3(32 * kWarpsPerBlock), 0, stream, pdl, &attr);
    err = cudaLaunchKernelEx(&cfg, bwd_convert_dq<T>, a, s, ready);
  }
  if (err != cudaSuccess) return err;
  if (s.head_splits > 1) {
    constexpr int kReduceThreads = 256;
    for (const bool is_v : {false, true}) {
      const int cols = is_v ? a.head_dim_v : a.head_dim;
      const int64_t threads = int64_t(a.seqlen_k) * (cols / 4);
      const dim3 reduce_grid(unsigned((threads + kReduceThreads - 1) / kReduceThreads), a.heads_kv,
                             a.batch);
      if (reduce_grid.x > 0)
        bwd_reduce_dkv<T><<<reduce_grid, kReduceThreads, 0, stream>>>(a, s, cols, is_v, block_n,
                                                                      has_local_mask(a));
    }
  }
  if (a.dsink != nullptr) bwd_dsink<<<a.heads_q, 256, 0, stream>>>(a, s);
  return cudaGetLastError();
}

}  // namespace

const char* bwd_unsupported_reason(const AttnBwdParams& a) {
  if (a.dtype != DType::kFloat16 && a.dtype != DType::kBFloat16)
    return "supports only float16 and bfloat16";
  bool built = false;
#define FA4_SM90_BWD_BUILT(D, DV, BN, BM, ST, PP) built |= a.head_dim == D && a.head_dim_v == DV;
  FA4_SM90_BWD_HDIM_TABLE(FA4_SM90_BWD_BUILT)
#undef FA4_SM90_BWD_BUILT
  if (!built)
    return "this (head_dim, head_dim_v) is not built (d = d_v in 64, 96, 128, 192, 256, and "
           "192 / 128 are)";
  if (a.paged()) return "paged KV has no backward";
  if (a.heads_kv <= 0 || a.heads_q % a.heads_kv != 0) return "heads_q must be a multiple of heads_kv";
  if (a.batch > 65535 || a.heads_kv > 65535) return "batch and heads must be <= 65535";
  if (a.seqlen_q < 0 || a.seqlen_k < 0) return "negative sequence length";
  const bool k_varlen = a.cu_seqlens_k != nullptr;
  if (k_varlen && a.total_k < 0) return "varlen keys need total_k >= 0";
  const int q_rows = a.q_varlen() ? a.total_q : a.seqlen_q;
  const int q_batch = a.q_varlen() ? 1 : a.batch;
  const int kv_rows = k_varlen ? a.total_k : a.seqlen_k;
  const int kv_batch = k_varlen ? 1 : a.batch;
  const bool kv_empty = kv_rows == 0;
  auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  if (!tma_ok(a.q, q_rows, a.heads_q, q_batch, a.q_row_stride, a.q_head_stride, a.q_batch_stride) ||
      !tma_ok(a.dout, q_rows, a.heads_q, q_batch, a.do_row_stride, a.do_head_stride,
              a.do_batch_stride) ||
      (!kv_empty && !tma_ok(a.k, kv_rows, a.heads_kv, kv_batch, a.k_row_stride, a.k_head_stride,
                            a.k_batch_stride)) ||
      (!kv_empty && !tma_ok(a.v, kv_rows, a.heads_kv, kv_batch, a.v_row_stride, a.v_head_stride,
                            a.v_batch_stride)) ||
      // out (read 16 bytes at a time) and the gradients (written 16 bytes at a time)
      !tma_ok(a.out, q_rows, a.heads_q, q_batch, a.o_row_stride, a.o_head_stride,
              a.o_batch_stride) ||
      !aligned(a.dq) || !aligned(a.dk) || !aligned(a.dv) ||
      !tma_ok(a.dk, kv_rows, a.heads_kv, kv_batch, a.dk_row_stride, a.dk_head_stride,
              a.dk_batch_stride) ||
      !tma_ok(a.dv, kv_rows, a.heads_kv, kv_batch, a.dv_row_stride, a.dv_head_stride,
              a.dv_batch_stride))
    return "TMA needs 16-byte aligned q/k/v/out/dout/dk/dv and positive strides "
           "that are multiples of 8 elements";
  return "";
}

size_t bwd_workspace_bytes(const AttnBwdParams& a) { return workspace_layout(a).total; }

BwdUnwrittenRows bwd_unwritten_rows(const AttnBwdParams& a) {
  // Every row below q_len(b) gets its dq from the convert kernel; every key block with a query
  // that sees it writes all its rows below k_len(b) (the kernel's early returns are the others).
  const bool q_ragged = a.q_varlen() || a.seqused_q != nullptr;
  const bool k_ragged = a.cu_seqlens_k != nullptr || a.seqused_k != nullptr;
  // Without a left window every key is seen by the last query row (its diagonal is the last key).
  const bool keys_unseen = a.window_left >= 0 || a.seqlen_q == 0 || a.batch == 0 || a.heads_q == 0;
  return {q_ragged, k_ragged || q_ragged || keys_unseen};
}

cudaError_t run_bwd(const AttnBwdParams& a, void* workspace, cudaStream_t stream) {
  if (bwd_unsupported_reason(a)[0] != '\0') return cudaErrorNotSupported;
  if (a.batch == 0 || a.heads_q == 0 || a.seqlen_q == 0) return cudaSuccess;
  const WorkspaceLayout w = workspace_layout(a);
  char* base = static_cast<char*>(workspace);
  BwdScratch s;
  s.dq_accum = reinterpret_cast<float*>(base + w.dq_accum);
  s.lse_log2 = reinterpret_cast<float*>(base + w.lse_log2);
  s.dpsum = reinterpret_cast<float*>(base + w.dpsum);
  s.semaphore = reinterpret_cast<int32_t*>(base + w.semaphore);
  s.dq_claim = reinterpret_cast<int32_t*>(base + w.dq_claim);
  s.dq_done = reinterpret_cast<int32_t*>(base + w.dq_done);
  s.head_splits = w.head_splits;
  s.heads_per_split = a.heads_q / a.heads_kv / w.head_splits;
  s.dk_partial = reinterpret_cast<float*>(base + w.dk_partial);
  s.dv_partial = reinterpret_cast<float*>(base + w.dv_partial);
  s.key_rows = w.key_rows;
  // The preprocess always runs before it (seqlen_q > 0 here). FA4_BWD_SERIAL_MAIN=1 launches the
  // main kernel after the preprocess has ended instead (A/B, debugging).
  const char* serial_main = std::getenv("FA4_BWD_SERIAL_MAIN");
  s.pdl_main = !(serial_main != nullptr && serial_main[0] == '1');
  s.rows_per_head = BwdScratch::rows_per_head_of(a);
  s.seqlen_q_rounded = (a.seqlen_q + BwdScratch::kAlignRows - 1) / BwdScratch::kAlignRows *
                       BwdScratch::kAlignRows;
  s.m_blocks = (a.seqlen_q + kMinBlockM - 1) / kMinBlockM;
  s.dq_wg_cols = -1;
#define FA4_SM90_BWD_DQ_LAYOUT(D, DV, BN, BM, ST, PP) \
  if (a.head_dim == D && a.head_dim_v == DV) s.dq_wg_cols = BwdScratch::dq_wg_cols_for(D, BM, PP);
  FA4_SM90_BWD_HDIM_TABLE(FA4_SM90_BWD_DQ_LAYOUT)
#undef FA4_SM90_BWD_DQ_LAYOUT
  if (s.dq_wg_cols < 0 || s.dq_wg_cols > kConvertFragMaxCols || s.dq_wg_cols % 8 != 0)
    return cudaErrorNotSupported;
  // Zeroing pass or first-claimer stores (bwd_kernel.h). The d 128 ping-pong kernel
  // (dq_wg_cols > 0) without a causal / window mask keeps the pass: its dQ warp, with two halves
  // to hand over per block, lost 5-7 % of the call to the claims at 4k-8k (H200, same process),
  // more than the pass costs there (+2 % at 1k); with a mask and at every other head dim the
  // claims measured -2..+7 %. FA4_BWD_ZERO_DQ_ACCUM=1 zeroes everywhere (A/B).
  const char* zero_dq = std::getenv("FA4_BWD_ZERO_DQ_ACCUM");
  s.dq_zeroed = (zero_dq != nullptr && zero_dq[0] == '1') || (s.dq_wg_cols > 0 && !has_local_mask(a));
  return a.dtype == DType::kBFloat16 ? run_bwd_typed<cutlass::bfloat16_t>(a, s, stream)
                                     : run_bwd_typed<cutlass::half_t>(a, s, stream);
}

}  // namespace fa4::sm90
