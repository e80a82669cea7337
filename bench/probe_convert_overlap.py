"""The backward op (torch.ops.fa4.bwd: preprocess, main kernel, dQ convert) with the convert as a
programmatic dependent launch against FA4_BWD_SERIAL_CONVERT=1 (launched after the main kernel),
alternating in one process so both see the same clocks; benchmark shapes (batch = 16384 / s,
heads = 2048 / d), bf16. Usage (GPU, built extension): PYTHONPATH=. python3 bench/probe_convert_overlap.py"""
import os
import statistics

import torch
from triton.testing import do_bench

import flash_attn4  # noqa: F401  (registers the fa4 ops)

print(torch.cuda.get_device_name())
for d in (64, 128, 256):
    for causal in (False, True):
        for s in (1024, 2048, 4096, 16384):
            b, h = 16384 // s, 2048 // d
            q, k, v, dout = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16) for _ in range(4))
            out, lse = torch.ops.fa4.fwd(q, k, v, causal=causal)
            fn = lambda: torch.ops.fa4.bwd(dout, q, k, v, out, lse, causal=causal)
            times = {"pdl": [], "serial": []}
            for _ in range(3):
                for mode in times:
                    if mode == "serial":
                        os.environ["FA4_BWD_SERIAL_CONVERT"] = "1"
                    else:
                        os.environ.pop("FA4_BWD_SERIAL_CONVERT", None)
                    times[mode].append(do_bench(fn, warmup=25, rep=100, return_mode="median"))
            os.environ.pop("FA4_BWD_SERIAL_CONVERT", None)
            pdl, serial = (statistics.median(t) * 1e3 for t in times.values())
            print(f"d{d:3d} causal {int(causal)} s{s:6d}  pdl {pdl:8.1f} us  serial {serial:8.1f} us  "
                  f"saved {serial - pdl:6.1f} us ({(serial / pdl - 1) * 100:+.1f} %)", flush=True)
