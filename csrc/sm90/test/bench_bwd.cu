// Same-machine timing of the sm90 backward main kernel alone (no preprocess / dq convert), bf16,
// at the benchmark's shapes (batch = 16384 / seqlen, heads = 2048 / d), for A/B comparisons of
// source trees: bench/ab_bwd.sh builds this from each tree and prints the TFLOP/s side by side.
// Not a correctness test (the GPU test suite is): inputs are random, lse_log2 = log2(seqlen) so
// that P has realistic magnitudes, D random. TFLOP/s count the backward's 2.5 x forward FLOPs.
//   bench_bwd [reps]
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "sm90/test/bench_bwd.h"

#include "sm90/test/check_cuda.h"

__global__ void fill_bf16(__nv_bfloat16* p, int64_t n, uint32_t seed, float amp) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    uint32_t x = uint32_t(i) * 2654435761u ^ seed;
    x ^= x >> 15; x *= 0x2c1b3c6du; x ^= x >> 12; x *= 0x297a2d39u; x ^= x >> 15;
    p[i] = __float2bfloat16(((x & 0xffffff) / float(0x1000000) * 2.f - 1.f) * amp);
  }
}
__global__ void fill_f32(float* p, int64_t n, float base, float amp) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    uint32_t x = uint32_t(i) * 2246822519u;
    x ^= x >> 13; x *= 0x5bd1e995u; x ^= x >> 15;
    p[i] = base + ((x & 0xffff) / 65536.f * 2.f - 1.f) * amp;
  }
}

// One CTA per (key block, head), all of its group's query heads (MHA: one): trees that split a GQA
// group over CTAs have these fields, older ones do not.
template <class S>
static auto whole_groups(S& s, int group) -> decltype(s.head_splits = 1, void()) {
  s.head_splits = 1;
  s.heads_per_split = group;
}
static void whole_groups(...) {}

// BwdScratch::dq_done where the tree has one (older trees are timed with this harness too).
template <class S>
static auto set_dq_done(S& s, int* c, int) -> decltype(s.dq_done = c, void()) {
  s.dq_done = c;
}
template <class S>
static void set_dq_done(S&, int*, long) {}
// BwdScratch::dq_zeroed where the tree has it: dq_accum is zeroed once above, and every key block
// adds into it (the default's first-claimer stores need claims zeroed before every launch).
template <class S>
static auto set_dq_zeroed(S& s, int) -> decltype(s.dq_zeroed = true, void()) {
  s.dq_zeroed = true;
}
template <class S>
static void set_dq_zeroed(S&, long) {}

template <int D>
static void run_case(int s, bool causal, int reps) {
  const int batch = 16384 / s, heads = 2048 / D;
  const int64_t elems = int64_t(batch) * s * heads * D;
  fa4::AttnBwdParams a;
  memset(&a, 0, sizeof(a));
  a.dtype = fa4::DType::kBFloat16;
  a.batch = batch;
  a.heads_q = a.heads_kv = heads;
  a.head_dim = a.head_dim_v = D;
  a.seqlen_q = a.seqlen_k = s;
  a.softmax_scale = 1.f / sqrtf(float(D));
  a.causal = causal;
  a.window_left = a.window_right = -1;
  __nv_bfloat16 *q, *k, *v, *dout, *dq, *dk, *dv;
  for (auto** t : {&q, &k, &v, &dout, &dq, &dk, &dv}) CK(cudaMalloc(t, elems * 2));
  int i = 0;
  for (auto* t : {q, k, v, dout}) fill_bf16<<<1024, 256>>>(t, elems, 17u * ++i, 1.f);
  a.q = q; a.k = k; a.v = v; a.dout = dout; a.dq = dq; a.dk = dk; a.dv = dv;
  const int64_t row = int64_t(heads) * D, bst = int64_t(s) * row;
  a.q_batch_stride = a.k_batch_stride = a.v_batch_stride = a.o_batch_stride = bst;
  a.do_batch_stride = a.dq_batch_stride = a.dk_batch_stride = a.dv_batch_stride = bst;
  a.q_row_stride = a.k_row_stride = a.v_row_stride = a.o_row_stride = row;
  a.do_row_stride = a.dq_row_stride = a.dk_row_stride = a.dv_row_stride = row;
  a.q_head_stride = a.k_head_stride = a.v_head_stride = a.o_head_stride = D;
  a.do_head_stride = a.dq_head_stride = a.dk_head_stride = a.dv_head_stride = D;

  fa4::sm90::BwdScratch sc{};  // pdl_main (trees that have it) false: ordinary launches
  sc.rows_per_head = fa4::sm90::BwdScratch::rows_per_head_of(a);
  sc.seqlen_q_rounded = s;  // s is a multiple of kAlignRows
  sc.m_blocks = (s + 63) / 64;
  whole_groups(sc, 1);
  // (+256 rows: a tree whose kBlockM does not divide the 128-row alignment may spill its last
  // block past the end.)
  const int64_t rows = int64_t(heads) * sc.rows_per_head + 256;
  CK(cudaMalloc(&sc.dq_accum, rows * D * 4));
  CK(cudaMalloc(&sc.lse_log2, rows * 4));
  CK(cudaMalloc(&sc.dpsum, rows * 4));
  CK(cudaMalloc(&sc.semaphore, int64_t(batch) * heads * sc.m_blocks * 4));
  CK(cudaMemset(sc.dq_accum, 0, rows * D * 4));
  CK(cudaMemset(sc.semaphore, 0, int64_t(batch) * heads * sc.m_blocks * 4));
  int* dq_done;  // the main kernel counts its finished heads there (trees that have it)
  CK(cudaMalloc(&dq_done, int64_t(batch) * heads * 4));
  set_dq_done(sc, dq_done, 0);
  set_dq_zeroed(sc, 0);
  fill_f32<<<1024, 256>>>(sc.lse_log2, rows, log2f(float(s)), 0.5f);
  fill_f32<<<1024, 256>>>(sc.dpsum, rows, 0.f, 0.05f);
  CK(cudaDeviceSynchronize());

  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  for (int w = 0; w < 3; ++w) CK(bb_run<D>(a, sc, 0));
  std::vector<float> ms;
  for (int r = 0; r < reps; ++r) {
    CK(cudaEventRecord(e0));
    CK(bb_run<D>(a, sc, 0));
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float t;
    CK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  const double med = ms[ms.size() / 2];
  const double flops = 2.5 * 4.0 * batch * heads * double(s) * s * D / (causal ? 2 : 1);
  printf("d %3d s %5d causal %d  %9.1f us  %6.1f TFLOP/s\n", D, s, int(causal), med * 1e3,
         flops / (med * 1e-3) / 1e12);
  fflush(stdout);
  for (auto* t : {q, k, v, dout, dq, dk, dv}) CK(cudaFree(t));
  CK(cudaFree(sc.dq_accum)); CK(cudaFree(sc.lse_log2)); CK(cudaFree(sc.dpsum));
  CK(cudaFree(sc.semaphore)); CK(cudaFree(dq_done));
  CK(cudaEventDestroy(e0)); CK(cudaEventDestroy(e1));
}

#ifdef BB_TRACE
void bb_dump_trace(const char* tag);
#endif

int main(int argc, char** argv) {
  const int reps = argc > 1 ? atoi(argv[1]) : 20;
#ifdef BB_TRACE
  // A tree instrumented by bench/trace_bwd.py, one head dim: its timelines at 4k and 16k.
  for (int s : {4096, 16384}) {
    run_case<BB_TRACE>(s, false, reps);
    char tag[16];
    snprintf(tag, sizeof(tag), "s%d", s);
    bb_dump_trace(tag);
  }
  return 0;
#endif
  for (int causal = 0; causal < 2; ++causal)
    for (int s : {1024, 4096, 16384}) {
#ifdef BB_HAS_D64
      run_case<64>(s, causal, reps);
#endif
#ifdef BB_HAS_D128
      run_case<128>(s, causal, reps);
#endif
#ifdef BB_HAS_D256
      run_case<256>(s, causal, reps);
#endif
    }
  return 0;
}
