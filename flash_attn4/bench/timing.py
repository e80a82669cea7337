"""Median GPU time of a callable, from CUDA events."""

from __future__ import annotations

import statistics
from typing import Callable

import torch

try:
    from triton.testing import do_bench
except ImportError:  # the fallback below keeps the CLI usable without Triton
    do_bench = None

# triton's do_bench flushes L2 before every rep by writing a 256 MiB buffer; the fallback does too,
# so both timers see cold-L2 kernels.
_FLUSH_BYTES = 256 * 1024 * 1024


def timer_description() -> str:
    if do_bench is not None:
        return ("median of CUDA-event timings, triton.testing.do_bench(warmup, rep, "
                "return_mode='median'), L2 flushed before each rep")
    return "median of CUDA-event timings (torch.cuda.Event loop, Triton missing), L2 flushed before each rep"


def median_ms(fn: Callable[[], object], warmup_ms: float, rep_ms: float) -> float:
    """Median milliseconds of fn() over about rep_ms of repetitions after about warmup_ms of warmup."""
    if do_bench is not None:
        return float(do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median"))
    return _event_loop_median_ms(fn, warmup_ms, rep_ms)


def _event_loop_median_ms(fn: Callable[[], object], warmup_ms: float, rep_ms: float) -> float:
    flush = torch.empty(_FLUSH_BYTES, dtype=torch.int8, device="cuda")
    # Estimate one call's time to turn the ms budgets into repetition counts (as do_bench does).
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    fn()
    torch.cuda.synchronize()
    start.record()
    for _ in range(5):
        fn()
    end.record()
    torch.cuda.synchronize()
    estimate = max(start.elapsed_time(end) / 5, 1e-3)
    for _ in range(max(1, int(warmup_ms / estimate))):
        fn()
    reps = max(1, int(rep_ms / estimate))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for s, e in zip(starts, ends):
        flush.zero_()
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends))
