// One head dim's dispatched backward main kernels for bench_bwd (compiled once per -DBB_D), with
// the tile config of the tree's own table (FA4_SM90_DEFINE_RUN_BWD_HDIM, as in instantiations/).
#include "sm90/bwd_launch_template.h"
#include "sm90/test/bench_bwd.h"

FA4_SM90_DEFINE_RUN_BWD_HDIM(cutlass::bfloat16_t, BB_D, BB_D)

template <>
cudaError_t bb_run<BB_D>(const fa4::AttnBwdParams& a, const fa4::sm90::BwdScratch& s,
                         cudaStream_t stream) {
  return fa4::sm90::run_bwd_hdim<cutlass::bfloat16_t, BB_D, BB_D>(a, s, stream);
}

#ifdef BB_TRACE
// The clock marks of an instrumented tree (bench/trace_bwd.py, which defines fa4_bwd_trace in its
// bwd_kernel.h), relative to warpgroup 0's first.
#include <stdio.h>
void bb_dump_trace(const char* tag) {
  const char* const* phases = fa4::sm90::fa4_bwd_trace_phases;  // named by trace_bwd.py
  unsigned long long t[2][16][16];
  cudaMemcpyFromSymbol(t, fa4::sm90::fa4_bwd_trace, sizeof(t));
  const long long base = (long long)t[0][0][0];
  for (int w = 0; w < 2; ++w) {
    printf("%s wg%d cycles per phase (mean of 15 query blocks):", tag, w);
    for (int k = 1; k < 14; ++k) {
      long long sum = 0;
      for (int i = 0; i < 15; ++i) sum += (long long)(t[w][i][k] - t[w][i][k - 1]);
      printf(" [%s] %lld", phases[k - 1], sum / 15);
    }
    long long tail = 0;
    for (int i = 0; i < 15; ++i) tail += (long long)(t[w][i + 1][0] - t[w][i][13]);
    printf(" [to next block] %lld, block %lld\n", tail / 15,
           (long long)(t[w][15][0] - t[w][0][0]) / 15);
  }
  for (int w = 0; w < 2; ++w)
    for (int i = 0; i < 16; ++i) {
      printf("%s wg%d block %2d:", tag, w, i);
      for (int k = 0; k < 14; ++k) printf(" %7lld", (long long)t[w][i][k] - base);
      printf("\n");
    }
}
#endif
