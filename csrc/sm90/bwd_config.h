// The one table of built sm90 backward kernels.
//
// FA4_SM90_BWD_HDIM_TABLE(X) lists X(head_dim, head_dim_v, kBlockN, kBlockM, kStages, kPingPong):
// kBlockN keys per CTA, kBlockM query rows streamed per pipeline stage (kStages deep), kPingPong
// the consumer warpgroups taking turns (kBlockN = 128 only; bwd_kernel.h). One (dtype, head_dim,
// head_dim_v) translation unit per row and dtype lives in instantiations/ (gen_instantiations.py); each unit builds the 4
// mask/softcap variants of its row. kBlockN picks how the two consumer warpgroups share the work:
//   128: each warpgroup owns 64 keys; P and dS stay in registers as the A operand of dV and dK.
//        Registers per consumer thread (240): dK + dV (2 * 64 * d / 128 = d), S + dP
//        (2 * 64 * kBlockM / 128), the dQ partial (kBlockM * d / 256): d <= 128.
//    64: both warpgroups see all 64 keys and split the head dimension of dK, dV and dQ (and the
//        queries of S and dP); P and dS go through shared memory. dK + dV take d / 2 registers,
//        the dQ partial d / 4: d = 192 (also with d_v = 128) and 256. Shared memory (K, V, kStages * (Q, dO), P and dS
//        double-buffered, the fp32 dQ partial) limits d = 256 to one stage.
// kBlockM = 128 at d = 64 (S^T / dP^T of 64 keys x 128 queries per warpgroup, dQ split along the
// queries): half the per-tile fixed costs per FLOP; ptxas reloads ~10 spilled values per tile
// there, and it still measured +3-8 % over kBlockM = 64 on every d = 64 cell (H200, perf notes).
// kPingPong: d = 64 +4-8 % on every length, causal or not; d = 128 +4-7 % (causal 1k -3 %) since
// the dQ buffer's "free" signal is an mbarrier that each warpgroup waits on alone (before, a named
// barrier of both warpgroups and the dQ warp pulled the turns back into lockstep: -3..-8 %).
// Main kernel alone, same-machine A/Bs on an H200, bench/results/ab_bwd_*; perf notes.
#pragma once

#define FA4_SM90_BWD_HDIM_TABLE(X) \
  X(64, 64, 128, 128, 2, true)     \
  X(96, 96, 128, 64, 2, false)     \
  X(128, 128, 128, 64, 2, true)    \
  X(192, 192, 64, 64, 2, false)    \
  X(192, 128, 64, 64, 2, false)    \
  X(256, 256, 64, 64, 1, false)
