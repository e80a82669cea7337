"""One sm90 forward call per head dim, for Nsight Compute (see bench/ncu_source.sh):
bf16, seqlen 4096, heads = 2048 / d, batch 2 (the benchmark's shape family); causal if the first
argument is 'causal'."""
import sys

import torch

import flash_attn4 as fa

args = sys.argv[1:]
causal = bool(args) and args[0] == "causal"
for d in [int(x) for x in args if x != "causal"] or [128]:
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4096, 2048 // d, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    fa.flash_attn_func(q, k, v, causal=causal)
    torch.cuda.synchronize()
    print(f"d{d}: done", flush=True)
