"""One sm90 backward call per head dim, for Nsight Compute:
    PYTHONPATH=. ncu --clock-control none --kernel-name regex:bwd_kernel --launch-skip 0 \
        --section SpeedOfLight --section WarpStateStats --section ComputeWorkloadAnalysis \
        python3 bench/profile_bwd.py 128 256
bf16, non-causal, seqlen 4096, heads = 2048 / d, batch 2 (the benchmark's shape family)."""
import sys

import torch

import flash_attn4 as fa

for d in [int(x) for x in sys.argv[1:]] or [128]:
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4096, 2048 // d, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    out = fa.flash_attn_func(q, k, v)
    torch.autograd.grad(out, [q, k, v], torch.randn_like(out))
    torch.cuda.synchronize()
    print(f"d{d}: done", flush=True)
