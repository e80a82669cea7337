# Where does benchmark time go beyond the kernels? For a few cells: do_bench with L2 flush (the
# benchmark's method), the same without flush, and the profiler's per-kernel device times.
# Usage (GPU, built extension): PYTHONPATH=. python3 bench/probe_overhead.py
import torch, torch.nn.functional as F, statistics
from torch.nn.attention import SDPBackend, sdpa_kernel
from triton.testing import do_bench
import flash_attn4

def noflush(fn, reps=100):
    for _ in range(10): fn()
    torch.cuda.synchronize()
    s = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    e = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for i in range(reps):
        s[i].record(); fn(); e[i].record()
    torch.cuda.synchronize()
    return statistics.median(a.elapsed_time(b) for a, b in zip(s, e))

def kernels(fn, reps=20):
    flush = torch.empty(256 << 20, dtype=torch.int8, device="cuda")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            flush.zero_(); fn()
        torch.cuda.synchronize()
    out = []
    for ev in prof.key_averages():
        if ev.device_time_total > 0 and "elementwise" not in ev.key and "fill" not in ev.key.lower():
            out.append((ev.device_time_total / reps, ev.count / reps, ev.key[:90]))
    return sorted(out, reverse=True)

for mode in ("fwd", "bwd"):
  for d, s, causal in [(128, 1024, False), (128, 1024, True), (64, 1024, True), (64, 1024, False), (256, 1024, False), (128, 16384, False)]:
    b, h = 16384 // s, 2048 // d
    q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16, requires_grad=(mode == "bwd")) for _ in range(3))
    flops = 4 * b * h * s * s * d * (0.5 if causal else 1) * (2.5 if mode == "bwd" else 1)
    qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
    def mk(prov):
        if prov == "fa4":
            f = lambda: flash_attn4.flash_attn_func(q, k, v, causal=causal)
        else:
            f = lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)
        if mode == "fwd":
            return f
        o = f(); do = torch.randn_like(o)
        return lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True)
    for prov in ("fa4", "cudnn"):
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            fn = mk(prov)
            t1 = do_bench(fn, warmup=25, rep=60, return_mode="median")
            t2 = noflush(fn)
            ks = kernels(fn)
        ksum = sum(t for t, c, n in ks)
        print(f"{mode} d{d} s{s} c{int(causal)} {prov:6s} flush {t1*1e3:8.1f} us ({flops/t1/1e9:5.0f})  noflush {t2*1e3:8.1f} us ({flops/t2/1e9:5.0f})  kernels {ksum:8.1f} us ({flops/ksum/1e6:5.0f})", flush=True)
        for t, c, n in ks[:6]:
            print(f"      {t:8.1f} us x{c:.0f} {n}")
