# GQA / MQA at small batch: does the backward (one CTA per (key block, kv head, batch), looping over
# the query heads of its group) leave SMs idle when there are few kv heads? For each shape: fa4's
# TFLOP/s forward and backward next to cuDNN's on the same problem with K / V expanded to every
# query head (same FLOPs; the expansion is not timed).
# Usage (GPU, built extension): PYTHONPATH=. python3 bench/probe_gqa.py [d ...]
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from triton.testing import do_bench

import flash_attn4

head_dims = [int(a) for a in sys.argv[1:]] or [128]
print(f"{torch.cuda.get_device_name()}  SMs {torch.cuda.get_device_properties(0).multi_processor_count}")
for d in head_dims:
    for causal in (False, True):
        for b, s, hq, hkv in [(1, 2048, 32, 32), (1, 2048, 32, 8), (1, 2048, 32, 1), (1, 8192, 32, 8),
                              (1, 8192, 32, 1), (2, 4096, 64, 8), (4, 1024, 32, 4)]:
            q = torch.randn(b, s, hq, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
            k, v = (torch.randn(b, s, hkv, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                    for _ in range(2))
            ke, ve = (t.detach().repeat_interleave(hq // hkv, dim=2).requires_grad_() for t in (k, v))
            fwd_flops = 4 * b * hq * s * s * d * (0.5 if causal else 1)
            row = f"d{d} c{int(causal)} b{b} s{s:5d} hq{hq} hkv{hkv:2d}"
            for name, fn_fwd in (
                ("fa4", lambda: flash_attn4.flash_attn_func(q, k, v, causal=causal)),
                ("cudnn", lambda: F.scaled_dot_product_attention(
                    q.transpose(1, 2), ke.transpose(1, 2), ve.transpose(1, 2), is_causal=causal)),
            ):
                with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
                    t_f = do_bench(fn_fwd, warmup=25, rep=100, return_mode="median")
                    o = fn_fwd()
                    do = torch.randn_like(o)
                    inputs = (q, k, v) if name == "fa4" else (q, ke, ve)
                    t_b = do_bench(lambda: torch.autograd.grad(o, inputs, do, retain_graph=True),
                                   warmup=25, rep=100, return_mode="median")
                row += f"  {name} fwd {fwd_flops / t_f / 1e9:4.0f} bwd {2.5 * fwd_flops / t_b / 1e9:4.0f}"
            print(row, flush=True)
