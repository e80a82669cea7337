"""No GPU: check the CPU op on a small problem against the float64 reference instead of timing
peers that need CUDA. Prints errors and wall-clock times; returns whether everything was within
the sanity limits."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

import flash_attn4
from flash_attn4.reference import attention_ref

from .correctness import REL_L2_LIMIT, rel_l2

SHAPE = (2, 256, 4, 64)  # batch, seqlen, heads, head_dim
DTYPES = (torch.float32, torch.bfloat16)
REPS = 10


def _median_ms(fn: Callable[[], object], before: Callable[[], object] = lambda: None) -> float:
    """Median wall-clock ms of fn() over REPS calls after one warm call; `before` runs untimed."""
    fn()
    times = []
    for _ in range(REPS):
        before()
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _row(dtype: torch.dtype, causal: bool, pass_: str, errors: dict[str, tuple[float, float]],
         ms: float, limit: float) -> tuple[str, bool]:
    """errors: tensor name -> (max abs, rel L2); reports the worst tensor of the pass."""
    name, (max_abs, rel) = max(errors.items(), key=lambda item: item[1][1])
    ok = all(r <= limit for _, r in errors.values())
    line = (f"{str(dtype).removeprefix('torch.'):<9} {'yes' if causal else 'no':<7}{pass_:<5}"
            f"{name:<5}{max_abs:11.2e}{rel:11.2e}{ms:10.3f}   {'ok' if ok else f'WRONG (> {limit:.0e})'}")
    return line, ok


def _check_case(dtype: torch.dtype, causal: bool) -> tuple[list[str], bool]:
    torch.manual_seed(0)
    q, k, v = (torch.randn(SHAPE, dtype=dtype, requires_grad=True) for _ in range(3))
    dout = torch.randn(SHAPE, dtype=dtype)
    ref_leaves = [t.detach().double().requires_grad_() for t in (q, k, v)]
    ref_out, _ = attention_ref(*ref_leaves, causal=causal, compute_dtype=torch.float64)
    ref_grads = torch.autograd.grad(ref_out, ref_leaves, dout.double())

    def errors(pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, tuple[float, float]]:
        return {n: ((a.double() - b).abs().max().item(), rel_l2(a, b)) for n, (a, b) in pairs.items()}

    def forward_only() -> torch.Tensor:
        with torch.no_grad():
            return flash_attn4.flash_attn_func(q, k, v, causal=causal)

    def clear_grads() -> None:
        for t in (q, k, v):
            t.grad = None

    limit = REL_L2_LIMIT[dtype]
    fwd_ms = _median_ms(forward_only)
    out = flash_attn4.flash_attn_func(q, k, v, causal=causal)
    fwd, fwd_ok = _row(dtype, causal, "fwd", errors({"out": (out, ref_out)}), fwd_ms, limit)
    # Timed: out.backward only, on the graph of the forward above; grads cleared untimed.
    bwd_ms = _median_ms(lambda: out.backward(dout, retain_graph=True), before=clear_grads)
    grads = {n: (t.grad, r) for n, t, r in zip(("dq", "dk", "dv"), (q, k, v), ref_grads)}
    bwd, bwd_ok = _row(dtype, causal, "bwd", errors(grads), bwd_ms, limit)
    return [fwd, bwd], fwd_ok and bwd_ok


def run(log: Callable[[str], None]) -> bool:
    b, s, h, d = SHAPE
    log(f"CPU op vs float64 attention_ref: batch {b}, seqlen {s}, heads {h}, head_dim {d}; "
        f"median of {REPS} wall-clock runs; errors of the worst tensor of each pass")
    log(f"{'dtype':<9} {'causal':<7}{'pass':<5}{'wrt':<5}{'max_abs':>11}{'rel_l2':>11}{'ms':>10}")
    all_ok = True
    for dtype in DTYPES:
        for causal in (False, True):
            try:
                lines, ok = _check_case(dtype, causal)
            except Exception as exc:  # report and go on: the other cases still say something
                lines, ok = [f"{str(dtype).removeprefix('torch.'):<9} {'yes' if causal else 'no':<7}"
                             f"!!! fa4 FAILED: {type(exc).__name__}: {exc}"], False
            for line in lines:
                log(line)
            all_ok &= ok
    return all_ok
