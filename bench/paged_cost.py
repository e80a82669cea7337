"""Cost of the paged-KV producer paths of the sm90 forward at one prefill shape (bf16, causal, 4
sequences of 4096 queries and keys, 16 query / 4 kv heads; head dims from the command line, default
128): unpaged, page 256 (whole-tile TMA boxes), and 64 / 32 / 16 / 8 / 3 / 1 through both paths
where both exist (TMA row boxes need page_size % 8 == 0; FA4_FWD_PAGED_PATH picks one), so the
dispatch rule of fwd_paged_gather (csrc/sm90/fwd_launch_template.h) can be checked on this GPU.
Median of CUDA-event timings with the benchmark's timer (flash_attn4.bench.timing).

    PYTHONPATH=. python bench/paged_cost.py [head_dim ...]   (repository root, after make build)
"""

import os
import sys

import torch

import flash_attn4 as fa
from flash_attn4.bench.config import attention_flops, tflops
from flash_attn4.bench.timing import median_ms

BLOCK_N = {64: 128, 96: 128, 128: 128, 192: 96, 256: 64}  # the forward table's kBlockN (fwd_config.h)


def main(head_dims):
    print(torch.cuda.get_device_name())
    for d in head_dims:
        torch.manual_seed(0)
        b, s, hq, hkv = 4, 4096, 16, 4
        q = torch.randn(b * s, hq, d, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(b, s, hkv, d, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(b, s, hkv, d, device="cuda", dtype=torch.bfloat16)
        cu = torch.arange(0, (b + 1) * s, s, device="cuda", dtype=torch.int32)
        flops = attention_flops(b, hq, s, d, True, "fwd")
        unpaged = lambda: fa.flash_attn_varlen_func(q, k.view(-1, hkv, d), v.view(-1, hkv, d), cu, cu, s, s,
                                                    causal=True)
        ref = unpaged()
        print(f"d {d} unpaged: {tflops(flops, median_ms(unpaged, 25, 100)):.0f} TFLOP/s")
        for page_size in (256, 64, 32, 16, 8, 3, 1):
            pages = s // page_size + (s % page_size > 0)
            table = torch.randperm(b * pages, device="cuda", dtype=torch.int32).view(b, pages)
            k_pages = torch.zeros(b * pages, page_size, hkv, d, device="cuda", dtype=torch.bfloat16)
            v_pages = torch.zeros_like(k_pages)
            pad = pages * page_size - s
            k_pages[table.long()] = torch.nn.functional.pad(k, (0, 0, 0, 0, 0, pad)).view(b, pages, page_size, hkv, d)
            v_pages[table.long()] = torch.nn.functional.pad(v, (0, 0, 0, 0, 0, pad)).view(b, pages, page_size, hkv, d)
            used = torch.full((b,), s, device="cuda", dtype=torch.int32)
            run = lambda: fa.flash_attn_varlen_func(q, k_pages, v_pages, cu, None, s, None, causal=True,
                                                    seqused_k=used, page_table=table)
            paths = [("default", None)]
            if page_size % BLOCK_N[d] != 0 and page_size % 8 == 0:
                paths += [("gather", "gather"), ("boxes", "boxes")]
            results = []
            for name, env in paths:
                os.environ.pop("FA4_FWD_PAGED_PATH", None)
                if env is not None:
                    os.environ["FA4_FWD_PAGED_PATH"] = env
                same = torch.equal(run(), ref)
                results.append(f"{name} {tflops(flops, median_ms(run, 25, 100)):.0f}"
                               + ("" if same else " (NOT bitwise equal to unpaged)"))
            os.environ.pop("FA4_FWD_PAGED_PATH", None)
            print(f"d {d} page_size {page_size}: " + ", ".join(results) + " TFLOP/s")


if __name__ == "__main__":
    main([int(x) for x in sys.argv[1:]] or [128])
