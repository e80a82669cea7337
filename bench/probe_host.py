"""Host time per call of the user functions at shapes whose kernels take a few microseconds, so the
host is the limit: N calls back to back, one synchronize, wall time / N. Forward without and with
requires_grad, forward + backward (torch.autograd.grad), against SDPA (cuDNN) on the same shapes.
Usage (GPU, built extension): PYTHONPATH=. python3 bench/probe_host.py
(PYTHONPATH at another checkout's flash_attn4 Python files with this build's _C times their host
code on the same kernels.)"""
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import flash_attn4 as fa


def per_call_us(fn, n=500, rounds=5):
    """The best of `rounds` timings of n calls (the host's own noise only adds time)."""
    for _ in range(50):
        fn()
    best = float("inf")
    for _ in range(rounds):
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t) / n * 1e6)
    return best


print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  flash_attn4 {fa.__file__}")
for b, s, h, d, causal in [(1, 128, 4, 64, False), (2, 256, 8, 128, True)]:
    q, k, v, go = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))
    qt, kt, vt = (t.transpose(1, 2) for t in (qg, kg, vg))
    row = f"b{b} s{s} h{h} d{d} c{int(causal)}"

    def fa_fb():
        out = fa.flash_attn_func(qg, kg, vg, causal=causal)
        return torch.autograd.grad(out, (qg, kg, vg), go)

    def sdpa_fb():
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)
        return torch.autograd.grad(out, (qg, kg, vg), go.transpose(1, 2))

    out, lse = torch.ops.fa4.fwd(q, k, v, causal=causal)
    cases = [("op fwd", lambda: torch.ops.fa4.fwd(q, k, v, causal=causal)),
             ("op bwd", lambda: torch.ops.fa4.bwd(go, q, k, v, out, lse, causal=causal)),
             ("fa4 fwd", lambda: fa.flash_attn_func(q, k, v, causal=causal)),
             ("fa4 fwd grad", lambda: fa.flash_attn_func(qg, kg, vg, causal=causal)),
             ("fa4 fwd+bwd", fa_fb), ("cudnn fwd+bwd", sdpa_fb)]
    print(row + "  " + "  ".join(f"{name} {per_call_us(fn):6.1f} us" for name, fn in cases), flush=True)
