"""Kernel timeline of the backward op (torch.ops.fa4.bwd) with its programmatic dependent launches
and with FA4_BWD_SERIAL_MAIN=1 / FA4_BWD_SERIAL_CONVERT=1, from torch.profiler: per call, each
kernel's [start, end] in us from the preprocess's start, then the medians over the calls of the
gap between the preprocess's end and the main kernel's start, and of the call's length (first
kernel's start to last kernel's end). bf16, batch = 16384 / s, heads = 2048 / d. Calls are
separated by a synchronize, so each starts on an idle GPU (no L2 flush).
Usage (GPU, built extension): PYTHONPATH=. python3 bench/probe_bwd_timeline.py [d] [s] [causal]"""
import os
import statistics
import sys

import torch
from torch.profiler import ProfilerActivity, profile

import flash_attn4  # noqa: F401  (registers the fa4 ops)

d = int(sys.argv[1]) if len(sys.argv) > 1 else 128
s = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
causal = len(sys.argv) > 3 and sys.argv[3] in ("1", "causal", "true")
torch.manual_seed(0)
q, k, v, dout = (torch.randn(16384 // s, s, 2048 // d, d, device="cuda", dtype=torch.bfloat16)
                 for _ in range(4))
out, lse = torch.ops.fa4.fwd(q, k, v, causal=causal)
MODES = {"pdl": {}, "serial main": {"FA4_BWD_SERIAL_MAIN": "1"},
         "serial both": {"FA4_BWD_SERIAL_MAIN": "1", "FA4_BWD_SERIAL_CONVERT": "1"}}
CALLS = 7


def short(name):
    for key in ("preprocess", "convert", "bwd_kernel", "reduce", "dsink"):
        if key in name:
            return key
    return name[:24]


print(torch.cuda.get_device_name(), f"d {d} s {s} causal {int(causal)}")
for mode, env in MODES.items():
    for name in ("FA4_BWD_SERIAL_MAIN", "FA4_BWD_SERIAL_CONVERT"):
        os.environ.pop(name, None)
    os.environ.update(env)
    for _ in range(3):
        torch.ops.fa4.bwd(dout, q, k, v, out, lse, causal=causal)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(CALLS):
            torch.ops.fa4.bwd(dout, q, k, v, out, lse, causal=causal)
            torch.cuda.synchronize()
    kernels = sorted((e.time_range.start, e.time_range.end, short(e.name)) for e in prof.events()
                     if e.device_type == torch.autograd.DeviceType.CUDA and e.device_time_total > 0)
    calls, current = [], []
    for kern in kernels:  # a call starts at each preprocess
        if kern[2] == "preprocess" and current:
            calls.append(current)
            current = []
        current.append(kern)
    calls.append(current)
    gaps, lengths = [], []
    for call in calls:
        t0 = call[0][0]
        by = {name: (a - t0, b - t0) for a, b, name in call}
        if "preprocess" in by and "bwd_kernel" in by:
            gaps.append(by["bwd_kernel"][0] - by["preprocess"][1])
        lengths.append(max(b for _, b, _ in call) - t0)
    last = calls[-1]
    print(f"{mode:12s} last call: " + ", ".join(f"{n} [{a - last[0][0]:.1f}, {b - last[0][0]:.1f}]"
                                                for a, b, n in last))
    print(f"{mode:12s} median over {len(calls)} calls: preprocess end -> main start "
          f"{statistics.median(gaps):+.1f} us, call {statistics.median(lengths):.1f} us", flush=True)
for name in ("FA4_BWD_SERIAL_MAIN", "FA4_BWD_SERIAL_CONVERT"):
    os.environ.pop(name, None)
