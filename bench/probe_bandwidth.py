"""Memory-bandwidth references for the backward's side kernels: torch zero / copy / cast / sum over
the byte counts of the preprocess (read O, dO; zero dq_accum) and the dQ convert, at the
benchmark's d 128 shapes (do_bench, L2 flushed). Usage (GPU): python3 bench/probe_bandwidth.py"""
import torch
from triton.testing import do_bench
n = 16 * 1024 * 16 * 128  # elements of one (b, s, h, d) tensor at the benchmark's d 128 shapes
a32 = torch.randn(n, device="cuda"); b32 = torch.empty_like(a32)
a16 = torch.randn(n, device="cuda", dtype=torch.bfloat16); b16 = torch.empty_like(a16)
def rep(name, fn, bytes_):
    t = do_bench(fn, warmup=25, rep=100, return_mode="median")
    print(f"{name:40s} {t*1e3:7.1f} us  {bytes_/t/1e9:6.2f} TB/s", flush=True)
rep("zero fp32 134 MB (write)", lambda: b32.zero_(), 4 * n)
rep("copy fp32 134 MB (read + write)", lambda: b32.copy_(a32), 8 * n)
rep("copy bf16 67 MB (read + write)", lambda: b16.copy_(a16), 4 * n)
rep("fp32 -> bf16 67 MB (read 134 + write 67)", lambda: b16.copy_(a32), 6 * n)
rep("sum fp32 134 MB (read)", lambda: a32.sum(), 4 * n)
