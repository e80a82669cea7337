// Per-tile phase timeline of one sm90 forward kernel (bf16, batched, the benchmark's shapes:
// batch = 16384 / seqlen, heads = 2048 / d). Built against a csrc/ instrumented by
// bench/trace_fwd.py (see there); -DTR_D, -DTR_DV (default TR_D), -DTR_CAUSAL, -DTR_WG (consumer
// warpgroups, default 2),
// -DTR_BN (keys per block, default the table's).
//   ./trace_fwd SEQLEN
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <vector>

#include "sm90/fwd_launch_template.h"

#ifndef TR_WG
#define TR_WG 2
#endif
#ifndef TR_DV
#define TR_DV TR_D  // head dim of v / out
#endif
#ifndef TR_BN
#define TR_BN 0  // keys per block; 0: the table's kBlockN
#endif

#include "sm90/test/check_cuda.h"

using namespace fa4::sm90;
using Element = cutlass::bfloat16_t;
using Config = HdimConfig<TR_D, TR_DV>;
constexpr int kBlockN = TR_BN > 0 ? TR_BN : Config::kBlockN;
using Traits = FwdTraits<Element, TR_D, TR_DV, kBlockN, Config::kStages, bool(TR_CAUSAL),
                         false, kDefaultRescale, kDefaultPolyPer8, Config::kOverlap,
                         Config::kPingPong && TR_WG == 2, false, TR_WG>;

__global__ void fill(Element* p, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    uint32_t x = uint32_t(i) * 2654435761u + seed;
    x ^= x >> 15; x *= 2246822519u; x ^= x >> 13;
    p[i] = Element(float(x & 0xffff) / 32768.f - 1.f);
  }
}

int main(int argc, char** argv) {
  const int s = argc > 1 ? atoi(argv[1]) : 1024;
  const int d = TR_D, dv = TR_DV, batch = 16384 / s, heads = 2048 / d;
  const int64_t n = int64_t(batch) * s * heads * d, nv = int64_t(batch) * s * heads * dv;
  Element *q, *k, *v, *o;
  float* lse;
  int* counter;
  CK(cudaMalloc(&q, n * 2)); CK(cudaMalloc(&k, n * 2)); CK(cudaMalloc(&v, nv * 2));
  CK(cudaMalloc(&o, nv * 2)); CK(cudaMalloc(&lse, int64_t(batch) * heads * s * 4));
  CK(cudaMalloc(&counter, 16));
  fill<<<1024, 256>>>(q, n, 1); fill<<<1024, 256>>>(k, n, 2); fill<<<1024, 256>>>(v, nv, 3);
  fa4::AttnParams a{};
  a.dtype = fa4::DType::kBFloat16;
  a.batch = batch; a.heads_q = a.heads_kv = heads; a.head_dim = d; a.head_dim_v = dv;
  a.seqlen_q = a.seqlen_k = s;
  a.softmax_scale = 1.f / sqrtf(float(d));
  a.causal = TR_CAUSAL; a.window_left = a.window_right = -1;
  a.q = q; a.k = k; a.v = v; a.out = o; a.lse = lse;
  a.q_batch_stride = a.k_batch_stride = int64_t(s) * heads * d;
  a.v_batch_stride = a.o_batch_stride = int64_t(s) * heads * dv;
  a.q_row_stride = a.k_row_stride = int64_t(heads) * d;
  a.v_row_stride = a.o_row_stride = int64_t(heads) * dv;
  a.q_head_stride = a.k_head_stride = d;
  a.v_head_stride = a.o_head_stride = dv;
  a.lse_batch_stride = int64_t(heads) * s; a.lse_head_stride = s;
  auto launch = [&] {
    CK(cudaMemsetAsync(counter, 0, 16));
    CK(launch_fwd<Traits>(a, 0, Traits::kTileCounter ? counter : nullptr));
  };
  for (int i = 0; i < 20; ++i) launch();
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
  const int reps = 50;
  CK(cudaEventRecord(e0));
  for (int i = 0; i < reps; ++i) launch();
  CK(cudaEventRecord(e1));
  CK(cudaEventSynchronize(e1));
  float ms = 0;
  CK(cudaEventElapsedTime(&ms, e0, e1));
  const double flops = 2.0 * batch * heads * double(s) * s * (d + dv) * (TR_CAUSAL ? 0.5 : 1.0);
  printf("d %d s %d causal %d wg %d kBlockN %d persistent %d counter %d: %.1f us, %.1f TFLOP/s\n",
         d, s, TR_CAUSAL, TR_WG, Traits::kBlockN, Traits::kPersistent, Traits::kTileCounter,
         ms * 1e3 / reps, flops / (ms * 1e-3 / reps) * 1e-12);

  // One traced launch on a cleared trace.
  static unsigned long long trace[kTrMaxCtas][kTrMaxTiles][5][kTrMarks];
  static int blocks[kTrMaxCtas][kTrMaxTiles];
  static unsigned long long ends[kTrMaxCtas];
  memset(trace, 0, sizeof(trace));
  memset(blocks, 0, sizeof(blocks));
  CK(cudaMemcpyToSymbol(fa4_fwd_trace, trace, sizeof(trace)));
  CK(cudaMemcpyToSymbol(fa4_fwd_trace_blocks, blocks, sizeof(blocks)));
  launch();
  CK(cudaDeviceSynchronize());
  CK(cudaMemcpyFromSymbol(trace, fa4_fwd_trace, sizeof(trace)));
  CK(cudaMemcpyFromSymbol(blocks, fa4_fwd_trace_blocks, sizeof(blocks)));
  CK(cudaMemcpyFromSymbol(ends, fa4_fwd_trace_end, sizeof(ends)));

  // Consumer phases per tile (marks of consumer warpgroup 0; warpgroup 1 printed as a check),
  // grouped by the tile's key blocks.
  const char* names[] = {"wait tile/Q", "first S", "first softmax", "loop", "last P V", "epilogue",
                         "to next tile"};
  constexpr int kMaxB = 160;
  std::vector<std::vector<double>> sum(kMaxB, std::vector<double>(9, 0.0));
  std::vector<int> cnt(kMaxB, 0);
  int ctas = 0;
  double total_tiles = 0;
  for (int c = 0; c < kTrMaxCtas; ++c) {
    if (trace[c][0][0][0] == 0) continue;
    ++ctas;
    for (int t = 0; t < kTrMaxTiles; ++t) {
      const auto* m = trace[c][t][0];
      const int nb = blocks[c][t];
      if (m[6] == 0 || nb <= 0 || nb >= kMaxB) continue;
      ++total_tiles;
      ++cnt[nb];
      for (int i = 0; i < 6; ++i) sum[nb][i] += double(m[i + 1] - m[i]);
      if (t + 1 < kTrMaxTiles && trace[c][t + 1][0][0] != 0)
        sum[nb][6] += double(trace[c][t + 1][0][0] - m[6]);
      // Producer: the tile announced (counter returned, sQ free), Q issued; relative to the
      // consumers' start of the tile (negative: before it).
      const auto* pm = trace[c][t][4];
      if (pm[2] != 0) sum[nb][7] += double(int64_t(pm[2]) - int64_t(m[0]));
      sum[nb][8] += double(trace[c][t][1][6] - trace[c][t][1][0]);
    }
  }
  printf("%d CTAs, %.0f traced tiles; mean cycles per phase by key blocks per tile\n", ctas,
         total_tiles);
  printf("%4s %6s", "nb", "tiles");
  for (const char* nm : names) printf(" %13s", nm);
  printf(" %13s %13s %13s\n", "loop/block", "Q issue-start", "tile (wg1)");
  for (int nb = 1; nb < kMaxB; ++nb) {
    if (cnt[nb] == 0) continue;
    printf("%4d %6d", nb, cnt[nb]);
    for (int i = 0; i < 7; ++i) printf(" %13.0f", sum[nb][i] / cnt[nb]);
    printf(" %13.0f %13.0f %13.0f\n", nb > 1 ? sum[nb][3] / cnt[nb] / (nb - 1) : 0.0,
           sum[nb][7] / cnt[nb], sum[nb][8] / cnt[nb]);
  }
  // Inside the first-S phase and the epilogue (store_tile), over all traced tiles: S issue
  // returned (7), slab free (lse written, previous store read, barrier; 8), O staged (9), fenced and
  // synced (10), store issued (11). With kDeferEpilogue the store marks in tile t's record belong
  // to tile t - 1's epilogue, run under tile t's first S GEMM.
  {
    constexpr bool kDefer = Traits::kDeferEpilogue;
    const char* sub[] = {"S issue", kDefer ? "slab free" : "epi start->slab free", "stage O",
                         "fence+sync", "store issue", kDefer ? "S wait after" : "-",
                         "tile known->K wait start", "K wait", "lse stores", "prev store read",
                         "slab barrier", "static: tile start->tile known", "static: tile known->prologue"};
    double acc[13] = {};
    int n = 0;
    for (int c = 0; c < kTrMaxCtas; ++c) {
      for (int t = 0; t < kTrMaxTiles; ++t) {
        const auto* m = trace[c][t][0];
        if (m[7] == 0 || m[11] == 0 || m[2] == 0) continue;
        ++n;
        acc[0] += double(m[7] - m[1]);
        acc[1] += double(m[8] - (kDefer ? m[7] : m[5]));
        acc[2] += double(m[9] - m[8]);
        acc[3] += double(m[10] - m[9]);
        acc[4] += double(m[11] - m[10]);
        if (kDefer) acc[5] += double(m[2] - m[11]);
        acc[6] += double(m[15] - m[1]);
        acc[7] += double(m[16] - m[15]);
        acc[8] += double(m[13] - m[12]);
        acc[9] += double(m[14] - m[13]);
        acc[10] += double(m[8] - m[14]);
        if (!Traits::kTileCounter) {  // static walks: tile read from ss.tile after its barrier
          acc[11] += double(m[17] - m[0]);
          acc[12] += double(m[1] - m[17]);
        }
      }
    }
    printf("sub-phases over %d tiles (wg0):", n);
    for (int i = 0; i < (Traits::kTileCounter ? 11 : 13); ++i) {
      if (i == 5 && !kDefer) continue;
      printf(" %s %.0f;", sub[i], n ? acc[i] / n : 0.0);
    }
    printf("\n");
  }
  unsigned long long first_end = ~0ull, last_end = 0;
  for (int c = 0; c < kTrMaxCtas; ++c) {
    if (ends[c] == 0 || trace[c][0][0][0] == 0) continue;
    first_end = std::min(first_end, ends[c]);
    last_end = std::max(last_end, ends[c]);
  }
  printf("CTA end spread (globaltimer): first to last %.1f us\n", (last_end - first_end) * 1e-3);
  return 0;
}
