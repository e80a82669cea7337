# Why is the forward slow at batch 1 (fa4 143 TFLOP/s vs cuDNN 592 at b1 s2048 h32 d128 in
# probe_gqa.py)? Per-kernel device times (profiler) and do_bench, with and without requires_grad.
# Usage (GPU, built extension): PYTHONPATH=. python3 bench/probe_small_batch.py
import torch
from triton.testing import do_bench
import flash_attn4

def kernels(fn, reps=10):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    return sorted(((ev.device_time_total / reps, ev.count / reps, ev.key[:100])
                   for ev in prof.key_averages() if ev.device_time_total > 0), reverse=True)

for b, s, h, d, causal in [(1, 2048, 32, 128, False), (8, 2048, 16, 128, False), (4, 1024, 32, 128, True),
                           (16, 1024, 16, 128, True), (1, 2048, 32, 64, False)]:
    for rg in (False, True):
        q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16, requires_grad=rg) for _ in range(3))
        fn = lambda: flash_attn4.flash_attn_func(q, k, v, causal=causal)
        t = do_bench(fn, warmup=25, rep=100, return_mode="median")
        flops = 4 * b * h * s * s * d * (0.5 if causal else 1)
        print(f"b{b} s{s} h{h} d{d} c{int(causal)} requires_grad={rg}: {t*1e3:7.1f} us {flops/t/1e9:5.0f} TFLOP/s", flush=True)
        for kt, c, n in kernels(fn)[:4]:
            print(f"     {kt:8.1f} us x{c:.1f} {n}")
