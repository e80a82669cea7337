"""The backward op (torch.ops.fa4.bwd: preprocess, main kernel, dQ convert) with its programmatic
dependent launches against serial launches, alternating in one process so both see the same clocks;
benchmark shapes (batch = 16384 / s, heads = 2048 / d), bf16. --serial names what the serial side
sets (--env NAME...: any other variables, set to 1 on that side): FA4_BWD_SERIAL_CONVERT=1 (the convert after the main kernel; the default, the eighteenth
session's probe), FA4_BWD_SERIAL_MAIN=1 (the main kernel after the preprocess), or both.
Usage (GPU, built extension): PYTHONPATH=. python3 bench/probe_convert_overlap.py [--serial main]
[--dims 64 128] [--seqlens 1024 2048]"""
import argparse
import os
import statistics

import torch
from triton.testing import do_bench

import flash_attn4  # noqa: F401  (registers the fa4 ops)

parser = argparse.ArgumentParser()
parser.add_argument("--serial", choices=["convert", "main", "main,convert"], default="convert")
parser.add_argument("--dims", type=int, nargs="+", default=[64, 128, 256])
parser.add_argument("--seqlens", type=int, nargs="+", default=[1024, 2048, 4096, 16384])
parser.add_argument("--rounds", type=int, default=3)
parser.add_argument("--env", nargs="+", help="variables the second side sets to 1 instead of "
                    "--serial's (e.g. FA4_BWD_ZERO_DQ_ACCUM)")
args = parser.parse_args()
env = args.env or [f"FA4_BWD_SERIAL_{stage.upper()}" for stage in args.serial.split(",")]


def set_serial(on):
    for name in env:
        if on:
            os.environ[name] = "1"
        else:
            os.environ.pop(name, None)


print(torch.cuda.get_device_name(), "serial side:", " ".join(f"{n}=1" for n in env))
for d in args.dims:
    for causal in (False, True):
        for s in args.seqlens:
            b, h = 16384 // s, 2048 // d
            q, k, v, dout = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16) for _ in range(4))
            out, lse = torch.ops.fa4.fwd(q, k, v, causal=causal)
            fn = lambda: torch.ops.fa4.bwd(dout, q, k, v, out, lse, causal=causal)
            times = {"pdl": [], "serial": []}
            for _ in range(args.rounds):
                for mode in times:
                    set_serial(mode == "serial")
                    times[mode].append(do_bench(fn, warmup=25, rep=100, return_mode="median"))
            set_serial(False)
            pdl, serial = (statistics.median(t) * 1e3 for t in times.values())
            print(f"d{d:3d} causal {int(causal)} s{s:6d}  pdl {pdl:8.1f} us  serial {serial:8.1f} us  "
                  f"saved {serial - pdl:6.1f} us ({(serial / pdl - 1) * 100:+.1f} %)", flush=True)
