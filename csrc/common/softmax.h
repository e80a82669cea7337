// The online-softmax update, shared by the CPU reference kernel and the GPU kernels.
//
// Scores arrive already scaled into the log2 domain (score * softmax_scale * log2(e)), so every
// exponential is an exp2. Per query row we keep the max actually applied (row_max) and the running
// sum of exp2(score - row_max); the output accumulator holds sum_j exp2(s_j - row_max) * v_j.
//
// Conditional rescaling (FlashAttention-4): when a new key block raises a row's max by no more than
// `rescale_threshold` (log2 units), keep the stale max instead of rescaling the accumulator and sum.
// The result stays exact because the final normalisation divides by the sum taken with the same
// stale max. Overflow bound: every exponent is then <= rescale_threshold, so each term is at most
// 2^threshold (256 for threshold 8) and the sum over N keys at most N * 256; with |v| <= 65504
// (fp16/bf16-representable, bf16 up to 3.4e38 but then softmax output itself overflows) the fp32
// accumulator stays below N * 256 * 65504 ~ 1.7e7 * N, far from FLT_MAX (3.4e38) for any N < 2^31.
// A threshold of 0 is the classic always-rescale update.
#pragma once

#include <math.h>

#include "macros.h"

namespace fa4 {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
// log2(256): the FlashAttention-4 rescale threshold.
constexpr float kRescaleThresholdLog2 = 8.0f;

template <typename Acc>
struct RowSoftmaxState {
  Acc row_max;  // max applied so far (log2 units); -inf until the row sees a key
  Acc row_sum;  // sum of exp2(score - row_max) over keys seen

  FA4_HOST_DEVICE void init() {
    row_max = -INFINITY;
    row_sum = Acc(0);
  }

  // Takes the max of the next key block (log2 units, -inf if every key is masked) and returns the
  // factor by which the output accumulator and row_sum must be multiplied (1 when nothing changes).
  // The caller then adds exp2(s - row_max) of the block to row_sum and to the accumulator.
  FA4_HOST_DEVICE Acc update_max(Acc block_max, Acc rescale_threshold) {
    if (!(block_max > row_max + rescale_threshold)) return Acc(1);  // also catches -inf blocks
    const Acc scale = row_max == -INFINITY ? Acc(0) : exp2(row_max - block_max);
    row_max = block_max;
    row_sum *= scale;
    return scale;
  }

  // exp2 argument offset for this row: -inf-safe (a row that saw no key subtracts 0, so masked
  // scores of -inf give exp2(-inf) = 0 and never NaN).
  FA4_HOST_DEVICE Acc max_for_exp() const { return row_max == -INFINITY ? Acc(0) : row_max; }

  // Adds a sink logit (log2 units) to the denominator only; it takes no value. Returns the
  // accumulator rescale factor like update_max.
  FA4_HOST_DEVICE Acc add_sink(Acc sink_log2) {
    Acc scale = Acc(1);
    if (sink_log2 > row_max) {
      scale = row_max == -INFINITY ? Acc(0) : exp2(row_max - sink_log2);
      row_sum *= scale;
      row_max = sink_log2;
    }
    row_sum += exp2(sink_log2 - row_max);
    return scale;
  }

  // 1 / row_sum for the final normalisation; 0 for a row that saw nothing, so its output is 0.
  FA4_HOST_DEVICE Acc inv_sum() const { return row_sum > Acc(0) ? Acc(1) / row_sum : Acc(0); }

  // Natural-log logsumexp of the scores (in softmax-scaled units); -inf for a row that saw nothing.
  FA4_HOST_DEVICE Acc lse() const {
    return row_sum > Acc(0) ? (row_max + log2(row_sum)) * Acc(kLn2) : Acc(-INFINITY);
  }
};

// softcap: score <- c * tanh(score / c), applied to the softmax-scaled score before masking.
template <typename Acc>
FA4_HOST_DEVICE Acc apply_softcap(Acc scaled_score, Acc softcap) {
  return softcap > Acc(0) ? softcap * tanh(scaled_score / softcap) : scaled_score;
}

// d(softcap(x))/dx expressed through the capped value y = c * tanh(x / c): 1 - (y / c)^2.
template <typename Acc>
FA4_HOST_DEVICE Acc softcap_grad(Acc capped_score, Acc softcap) {
  if (!(softcap > Acc(0))) return Acc(1);
  const Acc t = capped_score / softcap;
  return Acc(1) - t * t;
}

}  // namespace fa4
