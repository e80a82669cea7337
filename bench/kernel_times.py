"""Where one call's GPU time goes, kernel by kernel (torch.profiler), at a benchmark shape:
    PYTHONPATH=. python3 bench/kernel_times.py [d] [seqlen] [causal]
bf16, batch = 16384 / seqlen, heads = 2048 / d (the benchmark's convention); 5 timed calls of the
forward and of the backward after warm-up, average per call."""
import sys

import torch
from torch.profiler import ProfilerActivity, profile

import flash_attn4 as fa

d = int(sys.argv[1]) if len(sys.argv) > 1 else 128
s = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
causal = len(sys.argv) > 3 and sys.argv[3] in ("1", "causal", "true")
torch.manual_seed(0)
q, k, v = (torch.randn(16384 // s, s, 2048 // d, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
           for _ in range(3))
out = fa.flash_attn_func(q, k, v, causal=causal)
dout = torch.randn_like(out)
for _ in range(3):
    torch.autograd.grad(fa.flash_attn_func(q, k, v, causal=causal), [q, k, v], dout)
torch.cuda.synchronize()
calls = 5
with profile(activities=[ProfilerActivity.CUDA]) as prof:
    for _ in range(calls):
        torch.autograd.grad(fa.flash_attn_func(q, k, v, causal=causal), [q, k, v], dout)
    torch.cuda.synchronize()
rows = [(e.key, e.device_time_total / calls, e.count // calls) for e in prof.key_averages()
        if e.device_time_total > 0]
total = sum(t for _, t, _ in rows)
print(f"d {d}, seqlen {s}, causal {causal}: {total:.1f} us of GPU time per forward + backward")
for name, t, n in sorted(rows, key=lambda r: -r[1]):
    print(f"{t:9.1f} us {100 * t / total:5.1f} %  x{n}  {name[:110]}")
