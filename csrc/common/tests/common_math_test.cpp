// Host tests of the arch-neutral math (csrc/common), the same headers the GPU kernels compile,
// and of the sm90 backward scratch layout (host/device code too).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>

#include "common/exp2.h"
#include "common/mask.h"
#include "common/softmax.h"
#include "sm90/bwd_scratch.h"  // host/device like the common headers: dq_accum's column map

static int failures = 0;
#define EXPECT(cond)                                                    \
  do {                                                                  \
    if (!(cond)) {                                                      \
      std::fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                       \
    }                                                                   \
  } while (0)

static void test_exp2_poly() {
  double worst = 0;
  for (double x = -126.0; x <= 127.0; x += 1.0 / 4096) {
    const float xf = static_cast<float>(x);
    const double rel = std::fabs(fa4::exp2_poly(xf) / std::exp2(double(xf)) - 1.0);
    worst = rel > worst ? rel : worst;
  }
  std::printf("exp2_poly max relative error on [-126, 127]: %.3e\n", worst);
  EXPECT(worst <= fa4::kExp2PolyMaxRelError);
  EXPECT(fa4::exp2_poly(-INFINITY) == 0.0f);
  EXPECT(fa4::exp2_poly(0.0f) == 1.0f);
}

static void test_mask() {
  // seqlen_q 3, seqlen_k 5, causal: bottom-right aligned, row 0 sees keys 0..2.
  const fa4::MaskSpec causal = fa4::make_mask(3, 5, true, -1, -1);
  EXPECT(causal.visible(0, 2) && !causal.visible(0, 3) && causal.visible(2, 4));
  int lo, hi;
  causal.key_range(0, 1, &lo, &hi);
  EXPECT(lo == 0 && hi == 3);
  // Sliding window (1, 1) on a square: a band of width 3.
  const fa4::MaskSpec local = fa4::make_mask(6, 6, false, 1, 1);
  EXPECT(local.visible(3, 2) && local.visible(3, 4) && !local.visible(3, 1) && !local.visible(3, 5));
  local.key_range(2, 4, &lo, &hi);
  EXPECT(lo == 1 && hi == 5);
  // seqlen_q > seqlen_k with causal: the first rows see nothing.
  const fa4::MaskSpec empty_rows = fa4::make_mask(8, 2, true, -1, -1);
  empty_rows.key_range(0, 6, &lo, &hi);
  EXPECT(hi <= lo);
  // visible_cols (the kernels' per-row bounds) against the window's definition, element by element.
  for (int sq : {1, 5, 70}) {
    for (int sk : {0, 1, 9, 70}) {
      for (int wl : {-1, 0, 3}) {
        for (int wr : {-1, 0, 2}) {
          for (bool causal : {false, true}) {
            const fa4::MaskSpec m = fa4::make_mask(sq, sk, causal, wl, wr);
            for (int r = 0; r < sq; ++r) {
              const int diag = r + sk - sq;
              for (int c = -2; c < sk + 2; ++c) {
                const bool want = c >= 0 && c < sk && (m.window_right < 0 || c <= diag + m.window_right) &&
                                  (wl < 0 || c >= diag - wl);
                EXPECT(m.visible(r, c) == want);
              }
            }
          }
        }
      }
    }
  }
}

// key_range (forward: key blocks of a query block) and query_range (backward: query blocks of a key
// block) must describe the same (query block, key block) pairs as the element predicate: the
// backward's deterministic mode counts on it (a key block waits for exactly the blocks below it).
static void test_block_ranges_agree() {
  int checked = 0;
  for (int sq : {1, 5, 64, 67, 130}) {
    for (int sk : {0, 1, 7, 64, 129}) {
      for (int wl : {-1, 0, 3, 40}) {
        for (int wr : {-1, 0, 2, 33}) {
          for (bool causal : {false, true}) {
            const fa4::MaskSpec m = fa4::make_mask(sq, sk, causal, wl, wr);
            for (int bm : {16, 64}) {
              for (int bn : {8, 128}) {
                for (int r0 = 0; r0 < sq; r0 += bm) {
                  const int r1 = r0 + bm < sq ? r0 + bm : sq;
                  int c_lo, c_hi;
                  m.key_range(r0, r1, &c_lo, &c_hi);
                  for (int c0 = 0; c0 < sk; c0 += bn) {
                    const int c1 = c0 + bn < sk ? c0 + bn : sk;
                    bool any = false;
                    for (int r = r0; r < r1 && !any; ++r)
                      for (int c = c0; c < c1 && !any; ++c) any = m.visible(r, c);
                    int q_lo, q_hi;
                    m.query_range(c0, c1, &q_lo, &q_hi);
                    const bool by_keys = c_lo < c_hi && c0 < c_hi && c_lo < c1;
                    const bool by_queries = q_lo < q_hi && r0 < q_hi && q_lo < r1;
                    EXPECT(any == by_keys);
                    EXPECT(any == by_queries);
                    ++checked;
                  }
                }
              }
            }
          }
        }
      }
    }
  }
  std::printf("key_range / query_range agree with the mask on %d block pairs\n", checked);
}

static void test_online_softmax() {
  // Feeding scores block by block, with or without conditional rescaling, gives exact results.
  const float scores[] = {0.5f, -3.f, 2.f, 12.f, 11.5f, -40.f, 13.f, 0.f};
  for (float threshold : {0.0f, fa4::kRescaleThresholdLog2}) {
    fa4::RowSoftmaxState<double> state;
    state.init();
    double acc = 0;  // weighted sum with value_j = j
    for (int block = 0; block < 4; ++block) {
      double block_max = -INFINITY;
      for (int j = 2 * block; j < 2 * block + 2; ++j) block_max = std::fmax(block_max, scores[j]);
      acc *= state.update_max(block_max, threshold);
      for (int j = 2 * block; j < 2 * block + 2; ++j) {
        const double p = std::exp2(scores[j] - state.max_for_exp());
        state.row_sum += p;
        acc += p * j;
      }
    }
    double max = -INFINITY, sum = 0, want = 0;
    for (float s : scores) max = std::fmax(max, s);
    for (int j = 0; j < 8; ++j) sum += std::exp2(scores[j] - max);
    for (int j = 0; j < 8; ++j) want += std::exp2(scores[j] - max) * j / sum;
    EXPECT(std::fabs(acc * state.inv_sum() - want) < 1e-12);
    EXPECT(std::fabs(state.lse() - (max + std::log2(sum)) * fa4::kLn2) < 1e-9);
  }
  fa4::RowSoftmaxState<float> none;
  none.init();
  EXPECT(none.update_max(-INFINITY, 8.f) == 1.f && none.inv_sum() == 0.f && std::isinf(none.lse()));
}

// BwdScratch::dq_accum_col: a permutation of each row's columns that keeps aligned float4s whole
// (the dQ convert kernel reads them), and makes a warp's float2 store of a WGMMA accumulator
// fragment (8 consecutive rows x one 8-float chunk, lane l at row l / 4, column 2 * (l % 4))
// take 2 shared-memory wavefronts, the minimum for 256 bytes (8 without the permutation).
static int fragment_store_wavefronts(int head_dim, int row0, int chunk, bool permuted) {
  int words_per_bank[32][64];
  int count[32] = {};
  for (int lane = 0; lane < 32; ++lane) {
    const int row = row0 + lane / 4;
    const int col = chunk * 8 + 2 * (lane % 4);
    const int c = permuted ? fa4::sm90::BwdScratch::dq_accum_col(row, col) : col;
    for (int w = 0; w < 2; ++w) {
      const int word = row * head_dim + c + w;
      const int bank = word % 32;
      bool seen = false;
      for (int i = 0; i < count[bank]; ++i) seen |= words_per_bank[bank][i] == word;
      if (!seen) words_per_bank[bank][count[bank]++] = word;
    }
  }
  int wavefronts = 0;
  for (int b = 0; b < 32; ++b) wavefronts = count[b] > wavefronts ? count[b] : wavefronts;
  return wavefronts;
}

static void test_dq_accum_permutation() {
  using fa4::sm90::BwdScratch;
  for (int d : {64, 96, 128, 192, 256}) {
    for (int row = 0; row < 8; ++row) {
      bool hit[256] = {};
      for (int col = 0; col < d; ++col) {
        const int c = BwdScratch::dq_accum_col(row, col);
        EXPECT(c >= 0 && c < d && !hit[c]);
        if (c >= 0 && c < d) hit[c] = true;
        if (col % 4 == 0)
          for (int i = 1; i < 4; ++i) EXPECT(BwdScratch::dq_accum_col(row, col + i) == c + i);
      }
    }
    for (int row0 = 0; row0 < 64; row0 += 8) {
      for (int chunk = 0; chunk < d / 8; ++chunk) {
        EXPECT(fragment_store_wavefronts(d, row0, chunk, true) == 2);
        EXPECT(fragment_store_wavefronts(d, row0, chunk, false) == 8);  // what it fixes
      }
    }
  }
}

// The fragment-order chunk of a warpgroup's 64 x N dQ half: a permutation of its 64 N floats;
// thread t's value i (the wgmma D fragment: row 16 (t / 32) + (t % 32) / 4 + 8 (i / 2 % 2), column
// 8 (i / 4) + 2 (t % 4) + i % 2) sits at (i / 4) * 512 + 4 t + i % 4, where the kernel stores it.
static void test_dq_fragment_layout() {
  using fa4::sm90::BwdScratch;
  for (int n : {32, 48, 64, 96, 128}) {
    static bool hit[64 * 128];
    for (int i = 0; i < 64 * n; ++i) hit[i] = false;
    for (int row = 0; row < 64; ++row)
      for (int col = 0; col < n; ++col) {
        const int f = BwdScratch::dq_frag_index(row, col);
        EXPECT(f >= 0 && f < 64 * n && !hit[f]);
        if (f >= 0 && f < 64 * n) hit[f] = true;
      }
    for (int t = 0; t < 128; ++t)
      for (int i = 0; i < n / 2; ++i) {
        const int row = 16 * (t / 32) + (t % 32) / 4 + 8 * (i / 2 % 2);
        const int col = 8 * (i / 4) + 2 * (t % 4) + i % 2;
        EXPECT(BwdScratch::dq_frag_index(row, col) == (i / 4) * 512 + 4 * t + i % 4);
      }
  }
}

// fragment_cols_below against the column offsets it describes (8 * (c / 2) + c % 2), every
// bound from well below 0 to well past the last column, for each fragment width the kernels use.
template <int kCols>
static void check_fragment_cols_below() {
  for (int x = -40; x <= 8 * kCols + 40; ++x) {
    const uint32_t bits = fa4::fragment_cols_below<kCols>(x);
    for (int c = 0; c < 32; ++c) {
      const bool expected = c < kCols && 8 * (c / 2) + c % 2 < x;
      EXPECT(((bits >> c) & 1u) == (expected ? 1u : 0u));
    }
  }
}
static void test_fragment_cols_below() {
  check_fragment_cols_below<2>();
  check_fragment_cols_below<8>();
  check_fragment_cols_below<16>();
  check_fragment_cols_below<24>();
  check_fragment_cols_below<32>();
}

int main() {
  test_exp2_poly();
  test_mask();
  test_block_ranges_agree();
  test_online_softmax();
  test_dq_accum_permutation();
  test_dq_fragment_layout();
  test_fragment_cols_below();
  if (failures) std::fprintf(stderr, "%d check(s) failed\n", failures);
  else std::printf("all common math checks passed\n");
  return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
