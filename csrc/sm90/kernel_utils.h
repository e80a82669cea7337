// Device helpers shared by the sm90 forward and backward kernels: accumulator layout views, one
// warpgroup GEMM, quad reductions, fragment conversion.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cute/tensor.hpp>
#include <cute/arch/mma_sm90.hpp>
#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cutlass/numeric_types.h>

namespace fa4::sm90 {

using namespace cute;

namespace detail {

// Accumulator layout ((2, 2, V), MMA_M, MMA_N) -> ((2, MMA_M), (2, V, MMA_N)) = (row, col).
template <class L>
CUTE_HOST_DEVICE constexpr auto acc_rowcol(L const& l) {
  static_assert(rank(L{}) == 3);
  return make_layout(make_layout(get<0, 1>(l), get<1>(l)),
                     make_layout(get<0, 0>(l), get<0, 2>(l), get<2>(l)));
}

// Accumulator layout ((2, 2, V), MMA_M, MMA_N) of S reread as the register A operand of P V:
// ((2, 2, 2), MMA_M, (V / 2) * MMA_N). A 16-wide k slice holds two 8-wide accumulator column groups.
template <class L>
CUTE_HOST_DEVICE constexpr auto acc_as_a_operand(L const& l) {
  auto v = logical_divide(get<0, 2>(l), _2{});  // (2, V/2)
  return make_layout(make_layout(get<0, 0>(l), get<0, 1>(l), get<0>(v)), get<1>(l),
                     make_layout(get<1>(v), get<2>(l)));
}

// One warpgroup GEMM: issue all k slices, commit, optionally wait.
template <bool kZeroInit, int kWait, class TiledMma, class TA, class TB, class TC>
CUTE_DEVICE void wg_gemm(TiledMma& mma, TA const& a, TB const& b, TC& c) {
  constexpr bool kRegA = !is_base_of<GMMA::DescriptorIterator, typename TiledMma::FrgTypeA>::value;
  if constexpr (kRegA) warpgroup_fence_operand(const_cast<TA&>(a));
  warpgroup_fence_operand(c);
  warpgroup_arrive();
  if constexpr (kZeroInit) mma.accumulate_ = GMMA::ScaleOut::Zero;
  CUTE_UNROLL
  for (int k = 0; k < size<2>(a); ++k) {
    cute::gemm(mma, a(_, _, k), b(_, _, k), c);
    mma.accumulate_ = GMMA::ScaleOut::One;
  }
  warpgroup_commit_batch();
  if constexpr (kWait >= 0) warpgroup_wait<kWait>();
  warpgroup_fence_operand(c);
  if constexpr (kRegA) warpgroup_fence_operand(const_cast<TA&>(a));
}

CUTE_DEVICE float ex2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

CUTE_DEVICE float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffff, x, 1));
  x = fmaxf(x, __shfl_xor_sync(0xffffffff, x, 2));
  return x;
}
CUTE_DEVICE float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffff, x, 1);
  x += __shfl_xor_sync(0xffffffff, x, 2);
  return x;
}

// float fragment -> 16-bit fragment of the same layout, two elements per cvt.
template <class TSrc, class TDst>
CUTE_DEVICE void convert_frag(TSrc const& src, TDst& dst) {
  using Element = typename TDst::value_type;
  static_assert(size(TSrc{}) % 2 == 0);
  CUTE_UNROLL
  for (int i = 0; i < size(src); i += 2) {
    if constexpr (is_same_v<Element, cutlass::bfloat16_t>) {
      __nv_bfloat162 v = __floats2bfloat162_rn(src(i), src(i + 1));
      dst(i) = reinterpret_cast<Element const&>(v.x);
      dst(i + 1) = reinterpret_cast<Element const&>(v.y);
    } else {
      __half2 v = __floats2half2_rn(src(i), src(i + 1));
      dst(i) = reinterpret_cast<Element const&>(v.x);
      dst(i + 1) = reinterpret_cast<Element const&>(v.y);
    }
  }
}

}  // namespace detail

}  // namespace fa4::sm90
