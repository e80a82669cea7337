"""Cost of the paged-KV producer paths of the sm90 forward at one prefill shape (bf16, d 128, causal,
4 sequences of 4096 queries and keys, 16 query / 4 kv heads): unpaged, page sizes 256 (whole-tile
TMA boxes), 64 / 32 / 16 / 8 (8-row boxes) and 1, 3 (16-byte row chunks gathered by the producer
warp).
Median of CUDA-event timings with the benchmark's timer (flash_attn4.bench.timing).

    PYTHONPATH=. python bench/paged_cost.py   (from the repository root, after make build)
"""

import torch

import flash_attn4 as fa
from flash_attn4.bench.config import attention_flops, tflops
from flash_attn4.bench.timing import median_ms


def main():
    torch.manual_seed(0)
    b, s, hq, hkv, d = 4, 4096, 16, 4, 128
    q = torch.randn(b * s, hq, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(b, s, hkv, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(b, s, hkv, d, device="cuda", dtype=torch.bfloat16)
    cu = torch.arange(0, (b + 1) * s, s, device="cuda", dtype=torch.int32)
    flops = attention_flops(b, hq, s, d, True, "fwd")
    unpaged = lambda: fa.flash_attn_varlen_func(q, k.view(-1, hkv, d), v.view(-1, hkv, d), cu, cu, s, s, causal=True)
    ref = unpaged()
    print(f"unpaged: {tflops(flops, median_ms(unpaged, 25, 100)):.0f} TFLOP/s")
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
        same = torch.equal(run(), ref)
        print(f"page_size {page_size}: {tflops(flops, median_ms(run, 25, 100)):.0f} TFLOP/s "
              f"(bitwise equal to unpaged: {same})")


if __name__ == "__main__":
    main()
