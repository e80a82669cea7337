"""Per-phase clock timeline of the sm90 backward main kernel (kBlockN = 128 layout, d = 96 / 128):
    python3 bench/trace_bwd.py [--pp] TREE OUTDIR  # TREE: a directory holding a csrc/ ("." = checkout)
    (--pp: the marks of the ping-pong path, for a head dim whose table row has kPingPong on)
    export BB_SRC=$PWD/csrc/sm90/test CUTLASS_INC=$PWD/third_party/cutlass/include
    (cd OUTDIR && BB_TRACE=1 BB_DIMS=128 bash $BB_SRC/build_bench_bwd.sh $PWD/BIN)   # no GPU needed
    ./BIN 5                                    # on the GPU: non-causal 4k and 16k, then timelines
Copies TREE/csrc to OUTDIR/csrc and inserts clock64() reads at the phase boundaries of the
consumer loop of bwd_kernel.h, recorded by one thread per consumer warpgroup
of one CTA for 16 query blocks in its steady state (bench_bwd.cu built with BB_TRACE=1 prints
them: per phase, the mean cycles since the previous mark, and the raw marks). The
reads perturb register allocation a little (check ptxas): read phases, not absolute speed. (Marks
in the dQ warp read misleadingly: its clock read right after a named-barrier wait came out before
the wait.) An
anchor that no longer matches the kernel source stops the script: update ANCHORS with the kernel.
"""
import sys

from trace_patch import instrument

# (text in bwd_kernel.h, the same text with trace points); TR(k) records the end of phase k - 1 of
# bb_dump_trace's list (csrc/sm90/test/bench_bwd_kernels.cu), TR(0) the start of a query block.
def common(phases):
    names = ", ".join(f'"{n}"' for n in phases)
    return [
        ("namespace detail {\n",
         "__device__ unsigned long long fa4_bwd_trace[2][16][16];\n"
         f"static const char* const fa4_bwd_trace_phases[13] = {{{names}}};\nnamespace detail {{\n"),
        ("  const int ctid = threadIdx.x - 128;  // 0..255\n",
         "  const int ctid = threadIdx.x - 128;  // 0..255\n"
         "  const bool trace_on = blockIdx.x == 5 && blockIdx.y == 3 && blockIdx.z == 0 && (ctid & 127) == 0;\n"
         "#define TR(k) if (trace_on && iter >= 20 && iter < 36) fa4_bwd_trace[ctid / 128][iter - 20][k] = clock64();\n"),
        ("      pipe_q.consumer_wait(rd);\n      pipe_do.consumer_wait(rd);\n",
         "      TR(0)\n      pipe_q.consumer_wait(rd);\n      pipe_do.consumer_wait(rd);\n      TR(1)\n"),
    ]


ANCHORS = common(["Q/dO ready", "S,dP issued", "S done", "P done", "dP done", "dS stored",
                  "dV issued", "dS barrier", "dQ,dK issued", "dV done", "dQ done", "dQ staged",
                  "dK done"]) + [
    ("      warpgroup_wait<1>();  // S^T done, dP^T still running\n",
     "      TR(2)\n      warpgroup_wait<1>();  // S^T done, dP^T still running\n      TR(3)\n"),
    ("      warpgroup_wait<0>();  // dP^T done\n",
     "      TR(4)\n      warpgroup_wait<0>();  // dP^T done\n      TR(5)\n"),
    ("      copy(smem_copy_ds, thr_copy_ds.retile_S(tdSrdS), tdSsdS(_, _, _, ds_buf));\n",
     "      copy(smem_copy_ds, thr_copy_ds.retile_S(tdSrdS), tdSsdS(_, _, _, ds_buf));\n      TR(6)\n"),
    ("          issue_dv();\n          cutlass::arch::NamedBarrier::sync(kConsumerThreads, kBarDS);",
     "          issue_dv();\n          TR(7)\n          cutlass::arch::NamedBarrier::sync(kConsumerThreads, kBarDS);\n          TR(8)"),
    ("          issue_dk();\n          warpgroup_wait<2>();  // dV done: dO of this stage is no longer read\n",
     "          issue_dk();\n          TR(9)\n          warpgroup_wait<2>();  // dV done: dO of this stage is no longer read\n          TR(10)\n"),
    ("          warpgroup_wait<1>();  // dQ done, dK still running\n          warpgroup_fence_operand(tdQrdQ);\n          stage_dq(tdQrdQ, iter);\n          warpgroup_wait<0>();  // dK done: Q of this stage is no longer read\n",
     "          warpgroup_wait<1>();  // dQ done, dK still running\n          TR(11)\n          warpgroup_fence_operand(tdQrdQ);\n          stage_dq(tdQrdQ, iter);\n          TR(12)\n          warpgroup_wait<0>();  // dK done: Q of this stage is no longer read\n          TR(13)\n"),
]

# kPingPong: the turns, the dS of the previous block, the lagged dQ.
ANCHORS_PP = common(["Q/dO ready", "turn (S,dP)", "S,dP issued", "S done", "P done", "dP done",
                     "dS stored", "prev dS ready", "turn (dQ,dV,dK)", "dQ,dV,dK issued",
                     "dQ staged", "dV done", "dK done"]) + [
    ("      turn_wait();\n      wg_gemm<true, -1>(mma_sdp,",
     "      turn_wait();\n      TR(2)\n      wg_gemm<true, -1>(mma_sdp,"),
    ("      turn_pass(false);\n      warpgroup_wait<1>();  // S^T done, dP^T still running\n",
     "      turn_pass(false);\n      TR(3)\n"
     "      warpgroup_wait<1>();  // S^T done, dP^T still running\n      TR(4)\n"),
    ("      warpgroup_wait<0>();  // dP^T done\n",
     "      TR(5)\n      warpgroup_wait<0>();  // dP^T done\n      TR(6)\n"),
    ("        ss.ds_full[ds_buf].arrive();\n", "        ss.ds_full[ds_buf].arrive();\n        TR(7)\n"),
    ("            ss.ds_full[prev_buf].wait(((iter - 1) / Traits::kDSBuffers) & 1);\n          turn_wait();\n",
     "            ss.ds_full[prev_buf].wait(((iter - 1) / Traits::kDSBuffers) & 1);\n          TR(8)\n"
     "          turn_wait();\n          TR(9)\n"),
    ("          turn_pass(iter + 1 == total_iters);\n",
     "          turn_pass(iter + 1 == total_iters);\n          TR(10)\n"),
    ("            stage_dq(tdQrdQ, iter - 1);\n", "            stage_dq(tdQrdQ, iter - 1);\n            TR(11)\n"),
    ("          warpgroup_wait<1>();  // dV done: dO of this stage is no longer read\n",
     "          warpgroup_wait<1>();  // dV done: dO of this stage is no longer read\n          TR(12)\n"),
    ("          warpgroup_wait<0>();  // dK done: Q of this stage is no longer read\n          warpgroup_fence_operand(tdSrdS);\n          warpgroup_fence_operand(tdKrdK);\n          pipe_q.consumer_release(rd);\n        };",
     "          warpgroup_wait<0>();  // dK done: Q of this stage is no longer read\n          TR(13)\n          warpgroup_fence_operand(tdSrdS);\n          warpgroup_fence_operand(tdKrdK);\n          pipe_q.consumer_release(rd);\n        };"),
]


def main():
    args = sys.argv[1:]
    anchors = ANCHORS_PP if args[0] == "--pp" else ANCHORS
    args = args[1:] if args[0] == "--pp" else args
    instrument(args[0], args[1], "sm90/bwd_kernel.h", anchors)


if __name__ == "__main__":
    main()
