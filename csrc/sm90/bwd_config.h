// The one table of built sm90 backward kernels.
//
// FA4_SM90_BWD_HDIM_TABLE(X) lists X(head_dim, kBlockM, kStages): kBlockN (keys per CTA) is 128,
// 64 per consumer warpgroup; kBlockM query rows are streamed per pipeline stage. One (dtype,
// head_dim) translation unit per row and dtype lives in instantiations/ (gen_instantiations.py);
// each unit builds the 4 mask/softcap variants of its row.
//
// Register budget per consumer thread (240): dK and dV accumulators (2 * 64 * d / 128 = d),
// S and dP (2 * 64 * kBlockM / 128 = kBlockM), the dQ partial (kBlockM * d / 256). d = 192 and 256
// do not fit this split and are not built (NotImplementedError).
#pragma once

#define FA4_SM90_BWD_HDIM_TABLE(X) \
  X(64, 64, 2)                     \
  X(96, 64, 2)                     \
  X(128, 64, 2)
