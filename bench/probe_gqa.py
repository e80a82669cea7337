# GQA / MQA at small batch: does the backward leave SMs idle when there are few kv heads? For each
# shape: fa4's TFLOP/s forward and backward next to cuDNN's on the same problem with K / V
# expanded to every query head (same FLOPs; the expansion is not timed). --splits 1,2,4,...
# also times fa4's backward with each forced head-split count (FA4_BWD_HEAD_SPLITS; counts that do
# not divide the group are rounded down to one that does), to check bwd_api.cu's choice.
# Usage (GPU, built extension): PYTHONPATH=. python3 bench/probe_gqa.py [--splits 1,2,4] [d ...]
import argparse
import os

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from triton.testing import do_bench

import flash_attn4

parser = argparse.ArgumentParser()
parser.add_argument("head_dims", nargs="*", type=int, default=[128])
parser.add_argument("--splits", default="", help="comma-separated forced head-split counts")
args = parser.parse_args()
forced = [s for s in args.splits.split(",") if s]

print(f"{torch.cuda.get_device_name()}  SMs {torch.cuda.get_device_properties(0).multi_processor_count}")
for d in args.head_dims:
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
                    bwd = lambda: torch.autograd.grad(o, inputs, do, retain_graph=True)
                    t_b = do_bench(bwd, warmup=25, rep=100, return_mode="median")
                row += f"  {name} fwd {fwd_flops / t_f / 1e9:4.0f} bwd {2.5 * fwd_flops / t_b / 1e9:4.0f}"
                if name == "fa4" and forced and hq > hkv:
                    row += " [splits"
                    for n in forced:
                        os.environ["FA4_BWD_HEAD_SPLITS"] = n
                        t_n = do_bench(bwd, warmup=10, rep=50, return_mode="median")
                        row += f" {n}:{2.5 * fwd_flops / t_n / 1e9:.0f}"
                    del os.environ["FA4_BWD_HEAD_SPLITS"]
                    row += "]"
            print(row, flush=True)
