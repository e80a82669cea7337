"""Runs the grid on the GPU: per cell, random inputs shared by all providers, one measurement per
provider (failures recorded, never fatal), and fa4's correctness check."""

from __future__ import annotations

import re
import time
import warnings
from typing import Callable

import torch

from .config import CUDNN, OUR_VARIANTS, OURS, Cell, tflops
from .correctness import GPU_REFERENCE, check, gpu_reference
from .gpu_state import Sampler
from .providers import Provider, Run
from .results import FAILED, OK, SKIPPED, CellResult, ProviderResult
from .timing import median_ms

BWD_TIMING = ("torch.autograd.grad(out, (q, k, v), dout, retain_graph=True) on the graph of one "
              "forward run outside the timed region (no .grad accumulation is timed)")

Outputs = tuple[torch.Tensor, tuple[torch.Tensor, ...]]  # out, (dq, dk, dv) for bwd cells


def _short(text: str, limit: int = 160) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[:limit - 3] + "..."


def _sdpa_refusals(caught: list[warnings.WarningMessage]) -> list[str]:
    """SDPA's reasons for refusing a backend, from its warnings, without the boilerplate (the
    '... not used because:' headers, 'runtime disabled' notes for the backends switched off,
    source locations)."""
    reasons = []
    for w in caught:
        text = re.sub(r"\s*\(Triggered internally at .*?\)\s*$", "", str(w.message).strip())
        if text and not text.endswith(("because:", "runtime disabled.")):
            reasons.append(_short(text))
    return list(dict.fromkeys(reasons))


def _failure_reason(exc: BaseException, caught: list[warnings.WarningMessage]) -> str:
    reason = f"{type(exc).__name__}: {_short(str(exc))}"
    # SDPA raises a bare "No available kernel" and explains the refusal in warnings.
    if "No available kernel" in str(exc):
        reason += "".join(f" [{r}]" for r in _sdpa_refusals(caught))
    return reason


def measure(provider: Provider, cell: Cell, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
            dout: torch.Tensor | None, warmup_ms: float, rep_ms: float, cooldown_s: float = 0.0
            ) -> tuple[ProviderResult, Outputs | None]:
    """Times one provider on one cell, after `cooldown_s` idle seconds (so it does not inherit the
    power state the previous measurement left). Returns its result and, when it ran, the outputs
    of its first call (for the correctness check)."""
    skip = provider.skip_reason(cell)
    if skip is not None:
        return ProviderResult(SKIPPED, reason=skip), None
    leaves = (q, k, v)

    def step(run: Run) -> Outputs:
        out = run()
        grads = () if dout is None else torch.autograd.grad(out, leaves, dout, retain_graph=True)
        return out, grads

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with provider.context():
                run = provider.build(q, k, v, cell.causal)
                first = step(run)  # compiles / picks the kernel, so the memory step below is clean
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                out, _ = step(run)
                torch.cuda.synchronize()
                peak_mib = (torch.cuda.max_memory_allocated() - base) / 2**20
                if dout is None:
                    timed = run
                else:
                    def timed():
                        return torch.autograd.grad(out, leaves, dout, retain_graph=True)
                time.sleep(cooldown_s)
                with Sampler(q.device.index) as sampler:
                    ms = median_ms(timed, warmup_ms, rep_ms)
        except Exception as exc:  # any provider error is a result, not the end of the run
            torch.cuda.empty_cache()
            return ProviderResult(FAILED, reason=_failure_reason(exc, caught)), None
    clocks = sampler.state.result_fields() if sampler.state is not None else {}
    return ProviderResult(OK, ms, tflops(cell.flops, ms), peak_mib, **clocks), first


def _progress_line(name: str, result: ProviderResult, cell_result: CellResult) -> str:
    if result.status == OK:
        line = (f"  {name:<15}{result.tflops:8.1f} TFLOP/s {result.ms:9.3f} ms "
                f"peak {result.peak_mem_mib:8.1f} MiB")
        if result.sm_clock_mhz is not None:
            line += (f"  {result.sm_clock_mhz:5.0f} MHz {result.power_w:4.0f} W"
                     f" (power-capped {100 * result.power_capped:3.0f} %)")
    elif result.status == SKIPPED:
        line = f"  {name:<15}skipped: {result.reason}"
    else:
        marker = "!!! fa4 FAILED" if name == OURS else "failed"
        line = f"  {name:<15}{marker}: {result.reason}"
    check = cell_result.check
    if name == OURS and check is not None:
        errors = " ".join(f"{k}={v:.1e}" for k, v in check.rel_l2.items())
        verdict = "ok" if check.ok else f"!!! fa4 WRONG (limit {check.limit:.0e})"
        line += f"  rel_l2 {errors} {verdict}"
    return line


def _ratio_line(cell_result: CellResult) -> str:
    best = cell_result.best_peer()
    parts = []
    for label, peer in ((f"best peer ({best})", best), ("cuDNN", CUDNN)):
        ratio = cell_result.ratio_to(peer)
        parts.append(f"fa4 / {label} = {ratio:.2f}" if ratio is not None else f"fa4 / {label} = —")
    return "  -> " + ", ".join(parts)


def run_cell(cell: Cell, providers: list[Provider], dtype: torch.dtype, warmup_ms: float,
             rep_ms: float, log: Callable[[str], None], cooldown_s: float = 0.0) -> CellResult:
    torch.manual_seed(0)
    shape = (cell.batch, cell.seqlen_q, cell.heads, cell.head_dim)
    kv_shape = (cell.batch, cell.seqlen, cell.kv_heads, cell.head_dim)
    bwd = cell.mode == "bwd"
    q, k, v = (torch.randn(s, device="cuda", dtype=dtype, requires_grad=bwd)
               for s in (shape, kv_shape, kv_shape))
    dout = torch.randn(shape, device="cuda", dtype=dtype) if bwd else None
    cell_result = CellResult(cell)
    reference = None  # (out, grads) in float32, computed once for fa4 and its variants
    for provider in providers:
        result, outputs = measure(provider, cell, q, k, v, dout, warmup_ms, rep_ms, cooldown_s)
        if outputs is not None and (provider.name == OURS or provider.name in OUR_VARIANTS):
            if reference is None:
                reference = gpu_reference(q, k, v, cell.causal, dout)
            verdict = check(outputs[0], outputs[1], *reference, GPU_REFERENCE)
            if provider.name == OURS:
                cell_result.check = verdict
            elif not verdict.ok:  # a variant's number means nothing if its result is wrong
                result = ProviderResult(FAILED, reason=f"wrong result: {verdict.describe()}")
        cell_result.results[provider.name] = result
        del outputs  # free the kept outputs before the next provider
        log(_progress_line(provider.name, result, cell_result))
    if OURS in cell_result.results:
        log(_ratio_line(cell_result))
    return cell_result


def run_grid(cells: list[Cell], providers: list[Provider], dtype: torch.dtype, warmup_ms: float,
             rep_ms: float, log: Callable[[str], None], cooldown_s: float = 0.0) -> list[CellResult]:
    results = []
    for i, cell in enumerate(cells, 1):
        log(f"[{i}/{len(cells)}] {cell.describe()}")
        results.append(run_cell(cell, providers, dtype, warmup_ms, rep_ms, log, cooldown_s))
    return results
