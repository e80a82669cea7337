// Software exp2 for the FMA pipe (FlashAttention-4): lets part of the softmax exponentials bypass the
// MUFU unit. x = j + f with j = floor(x) and f in [0, 1); 2^f comes from a degree-3 polynomial fitted
// for minimax relative error on [0, 1) with p(0) = 1 (max relative error 8.6e-5, well under bf16's
// 3.9e-3 and fp16's 4.9e-4 rounding), and j is added straight into the exponent bits.
// Arguments below -126 return 0 (MUFU.EX2 flushes the same subnormal range), -inf included; the
// argument must be <= 127 (attention only evaluates exp2(s - max) <= 2^8).
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "macros.h"

namespace fa4 {

constexpr float kExp2PolyC1 = 0.6951165f;
constexpr float kExp2PolyC2 = 0.22764611f;
constexpr float kExp2PolyC3 = 0.07706602f;
constexpr float kExp2PolyMaxRelError = 8.6e-5f;

FA4_HOST_DEVICE int32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_int(x);
#else
  int32_t bits;
  memcpy(&bits, &x, sizeof(bits));
  return bits;
#endif
}

FA4_HOST_DEVICE float float_from_bits(int32_t bits) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(bits);
#else
  float x;
  memcpy(&x, &bits, sizeof(x));
  return x;
#endif
}

// floor(x) for the exponent. On the GPU without FRND / F2I: those conversions issue on the same
// 16-per-clock unit as MUFU.EX2, so two of them per exponential would cost more of that unit than the
// polynomial saves. Adding 1.5 * 2^23 with round-down leaves floor(x) in the low mantissa bits
// (exact for |x| < 2^22); the host computes the same integer with floorf.
struct Exp2Split {
  float j;           // floor(x) as a float
  int32_t j_shifted; // floor(x) << 23, ready to add to the exponent field
};
FA4_HOST_DEVICE Exp2Split exp2_split(float x) {
#if defined(__CUDA_ARCH__)
  constexpr float kRoundShift = 12582912.0f;  // 1.5 * 2^23: its ulp is 1
  const float t = __fadd_rd(x, kRoundShift);
  // t's low mantissa bits hold floor(x) + 2^22; shifted by 23 the 2^22 (and t's exponent) leave
  // the 32-bit word, floor(x) << 23 stays.
  return {t - kRoundShift, static_cast<int32_t>(static_cast<uint32_t>(float_bits(t)) << 23)};
#else
  const float j = floorf(x);
  return {j, static_cast<int32_t>(static_cast<uint32_t>(static_cast<int32_t>(j)) << 23)};
#endif
}

FA4_HOST_DEVICE float exp2_poly(float x) {
  if (!(x >= -126.0f)) return 0.0f;
  const Exp2Split split = exp2_split(x);
  const float f = x - split.j;
  const float p = fmaf(fmaf(fmaf(kExp2PolyC3, f, kExp2PolyC2), f, kExp2PolyC1), f, 1.0f);
  // p is in [1, 2): adding j to its biased exponent multiplies it by 2^j without touching the mantissa.
  return float_from_bits(static_cast<int32_t>(static_cast<uint32_t>(float_bits(p)) +
                                              static_cast<uint32_t>(split.j_shifted)));
}

}  // namespace fa4
