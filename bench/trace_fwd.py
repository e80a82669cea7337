"""Per-tile phase timeline of the sm90 forward kernel (overlapped loop; every CTA, every tile):
    python3 bench/trace_fwd.py TREE OUTDIR     # TREE: a directory holding a csrc/ ("." = checkout)
    nvcc <flags of csrc/sm90/test/build.sh> -I OUTDIR/csrc -DTR_D=64 -DTR_CAUSAL=1 [-DTR_WG=2]
         csrc/sm90/test/trace_fwd.cu -o BIN     # no GPU needed
    ./BIN SEQLEN                                # on the GPU
Copies TREE/csrc to OUTDIR/csrc and inserts clock64() reads at the phase boundaries of each tile
in fwd_kernel.h: one thread per consumer warpgroup (tile start, tile known / Q landed, first S
done (with kDeferEpilogue the previous tile's epilogue runs under it), first softmax done,
key-block loop done, last P V done, stored or deferred) and the producer thread
(tile known from the counter, sQ free, Q issued, last K / V issued). trace_fwd.cu prints, per
number of key blocks in the tile, the mean cycles of each phase, and the CTAs' idle time at the
end of the kernel. The reads perturb the schedule a little: read phases, not absolute speed. An
anchor that no longer matches the kernel source stops the script: update ANCHORS with the kernel.
"""
import sys

from trace_patch import instrument

DECL = """
// trace_fwd.py: [CTA][tile of the CTA][consumer warpgroup 0..3, producer 4][mark]
constexpr int kTrMaxCtas = 160, kTrMaxTiles = 128, kTrMarks = 18;
__device__ unsigned long long fa4_fwd_trace[kTrMaxCtas][kTrMaxTiles][5][kTrMarks];
__device__ int fa4_fwd_trace_blocks[kTrMaxCtas][kTrMaxTiles];   // key blocks of the tile
__device__ unsigned long long fa4_fwd_trace_end[kTrMaxCtas];     // globaltimer at the CTA's end
__device__ __forceinline__ unsigned long long fa4_globaltimer() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
  return t;
}
"""

ANCHORS = [
    ("using namespace cute;\n", "using namespace cute;\n" + DECL),
    # producer
    ("    if (leader || (Traits::kGather && threadIdx.x < 32)) {\n",
     "    if (leader || (Traits::kGather && threadIdx.x < 32)) {\n      int tr_ptile = 0;\n"
     "#define PTR(k) if (threadIdx.x == 0 && blockIdx.x < kTrMaxCtas && tr_ptile < kTrMaxTiles) "
     "fa4_fwd_trace[blockIdx.x][tr_ptile][4][k] = clock64();\n"),
    ("        const bool in_range = t < num_tiles;\n",
     "        PTR(0)\n        const bool in_range = t < num_tiles;\n"),
    ("        if (i >= Traits::kQBuffers) ss.barrier_q_free[b].wait((i / Traits::kQBuffers - 1) & 1);\n",
     "        if (i >= Traits::kQBuffers) ss.barrier_q_free[b].wait((i / Traits::kQBuffers - 1) & 1);\n        PTR(1)\n"),
    ("        copy(p.tma_q.with(reinterpret_cast<uint64_t&>(ss.barrier_q[b]), 0), tQg, tQs(_, b));\n",
     "        copy(p.tma_q.with(reinterpret_cast<uint64_t&>(ss.barrier_q[b]), 0), tQg, tQs(_, b));\n        PTR(2)\n"),
    ("            if (n == n_max - 1) announce_next(i_tile, t);\n          }\n        }\n",
     "            if (n == n_max - 1) announce_next(i_tile, t);\n          }\n        }\n        PTR(3)\n        ++tr_ptile;\n"),
    # consumers
    ("  const int ctid = threadIdx.x - 128;  // 0..255\n",
     "  const int ctid = threadIdx.x - 128;  // 0..255\n  int tr_tile = 0;\n"
     "#define TR(k) if (ctid % 128 == 0 && blockIdx.x < kTrMaxCtas && tr_tile < kTrMaxTiles) "
     "fa4_fwd_trace[blockIdx.x][tr_tile][ctid / 128][k] = clock64();\n"),
    ("  for (int t = first_tile; Traits::kAnnounce || t < num_tiles; t += tile_step) {\n",
     "  for (int t = first_tile; Traits::kAnnounce || t < num_tiles; t += tile_step) {\n    TR(0)\n"),
    ("      ss.barrier_q[qb].wait((q_waits++ / Traits::kQBuffers) & 1);\n",
     "      ss.barrier_q[qb].wait((q_waits++ / Traits::kQBuffers) & 1);\n      TR(1)\n"),
    ("        softmax.init();\n        // Prologue",
     "        if constexpr (!Traits::kAnnounce) TR(1)\n        softmax.init();\n        // Prologue"),
    ("        warpgroup_wait<0>();\n        warpgroup_fence_operand(tSrS);\n        pipe_k.consumer_release(rd);\n",
     "        warpgroup_wait<0>();\n        TR(2)\n        warpgroup_fence_operand(tSrS);\n        pipe_k.consumer_release(rd);\n"),
    ("        for (n = n_max - 2; n >= n_min; --n) {\n",
     "        TR(3)\n        for (n = n_max - 2; n >= n_min; --n) {\n"),
    ("        // Tail: the last P V.\n", "        TR(4)\n        // Tail: the last P V.\n"),
    ("  // (kOInV: after O's store)\n        rescale_o(f);\n",
     "  // (kOInV: after O's store)\n        TR(5)\n        rescale_o(f);\n"),
    ("        end_tile(w, true, rd_v);\n        continue;\n",
     "        end_tile(w, true, rd_v);\n        TR(6)\n"
     "        if (ctid == 0 && blockIdx.x < kTrMaxCtas && tr_tile < kTrMaxTiles) fa4_fwd_trace_blocks[blockIdx.x][tr_tile] = n_max - n_min;\n"
     "        ++tr_tile;\n        continue;\n"),
    ("  if (store_thread) tma_store_wait<0>();\n#endif\n",
     "  if (store_thread) tma_store_wait<0>();\n"
     "  if (ctid == 0 && blockIdx.x < kTrMaxCtas) fa4_fwd_trace_end[blockIdx.x] = fa4_globaltimer();\n#endif\n"),
    # finer marks of the first-S phase and of the epilogue (store_tile); with kDeferEpilogue the
    # store marks of tile t's epilogue land in tile t + 1's record, inside its first-S phase
    ("        turn_pass();\n        flush_pending();  // the previous tile's epilogue, under this S GEMM\n",
     "        turn_pass();\n        TR(7)\n        flush_pending();  // the previous tile's epilogue, under this S GEMM\n"),
    ("      cutlass::arch::NamedBarrier::sync(128, kBarWarpgroup + wgc);\n    }\n    copy(tOrOe, thr_o_wg.partition_C(sO));\n",
     "      cutlass::arch::NamedBarrier::sync(128, kBarWarpgroup + wgc);\n    }\n    TR(8)\n    copy(tOrOe, thr_o_wg.partition_C(sO));\n    TR(9)\n"),
    ("    cutlass::arch::NamedBarrier::sync(128, kBarWarpgroup + wgc);\n    const int slab_row = w.row_begin + 64 * wgc;\n",
     "    cutlass::arch::NamedBarrier::sync(128, kBarWarpgroup + wgc);\n    TR(10)\n    const int slab_row = w.row_begin + 64 * wgc;\n"),
    ("      copy(p.tma_o, tOs, tOg);\n      tma_store_arrive();\n    }\n",
     "      copy(p.tma_o, tOs, tOg);\n      tma_store_arrive();\n    }\n    TR(11)\n"),
    ("    Tensor sO = o_slab(v_held.index());\n",
     "    Tensor sO = o_slab(v_held.index());\n    TR(12)\n    TR(13)\n"),
    ("    } else if constexpr (Traits::kPersistent) {\n      if (store_thread) tma_store_wait<0>();\n",
     "    } else if constexpr (Traits::kPersistent) {\n      if (store_thread) tma_store_wait<0>();\n      TR(14)\n"),
    ("        pipe_k.consumer_wait(rd);\n        turn_wait();\n        detail::wg_gemm<true, -1>",
     "        TR(15)\n        pipe_k.consumer_wait(rd);\n        TR(16)\n        turn_wait();\n        detail::wg_gemm<true, -1>"),
    ("      else return tile_work(t);\n    }();\n", "      else return tile_work(t);\n    }();\n    TR(17)\n"),
]


def main():
    instrument(sys.argv[1], sys.argv[2], "sm90/fwd_kernel.h", ANCHORS)


if __name__ == "__main__":
    main()
