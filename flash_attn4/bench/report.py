"""Writers for a run: JSON (everything), Markdown tables (the ANCHORS.md format), PNG plot.

Standard library only at import time; matplotlib is imported when plotting and is optional.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .config import CUDNN, LABELS, OUR_VARIANTS, OURS, PROVIDERS
from .results import FAILED, OK, CellResult, cell_from_json

DASH = "—"


def slug(text: str) -> str:
    """'NVIDIA H200' -> 'nvidia-h200' (safe in file names)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def output_stem(out_dir: Path, gpu_name: str, date: str, tag: str) -> Path:
    """out_dir/bench_<gpu-slug>_<date>_<tag>; the writers add .json / .md / .png."""
    return Path(out_dir) / f"bench_{slug(gpu_name)}_{date}_{slug(tag)}"


def write_json(path: Path, metadata: dict, cells: list[CellResult]) -> None:
    payload = {"metadata": metadata, "cells": [c.to_json() for c in cells]}
    path.write_text(json.dumps(payload, indent=2) + "\n")


def read_json(path: Path) -> tuple[dict, list[CellResult]]:
    payload = json.loads(Path(path).read_text())
    return payload["metadata"], [cell_from_json(c) for c in payload["cells"]]


def _providers_in(cells: list[CellResult]) -> list[str]:
    present = {p for c in cells for p in c.results}
    return [p for p in PROVIDERS if p in present]


def _tflops_entry(cell: CellResult, provider: str) -> str:
    result = cell.results.get(provider)
    if result is None or result.status != OK:
        # Our own failures must stand out; a peer's gap is just a dash (reasons are listed below).
        return "**FAIL**" if provider == OURS and result is not None and result.status == FAILED \
            else DASH
    entry = f"{result.tflops:.0f}"
    if provider == OURS and cell.check is not None and not cell.check.ok:
        entry += " **WRONG**"
    return entry


def _ratio_entry(ratio: float | None) -> str:
    return DASH if ratio is None else f"{ratio:.2f}"


def markdown_tables(cells: list[CellResult]) -> str:
    """One table per (mode, causal) in grid order; rows head_dim × seqlen, TFLOP/s per provider,
    then fa4 / best peer and fa4 / cuDNN."""
    providers = _providers_in(cells)
    header = (["head_dim", "seqlen"] + [f"`{LABELS[p]}`" for p in providers]
              + ["fa4 / best peer", "fa4 / cuDNN"])
    sections: list[str] = []
    groups: dict[tuple[str, bool], list[CellResult]] = {}
    for c in cells:
        groups.setdefault((c.cell.mode, c.cell.causal), []).append(c)
    for (mode, causal), group in groups.items():
        lines = [f"## {mode}, {'causal' if causal else 'non-causal'}", "",
                 "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for c in group:
            row = ([str(c.cell.head_dim), str(c.cell.seqlen)]
                   + [_tflops_entry(c, p) for p in providers]
                   + [_ratio_entry(c.ratio_to(c.best_peer())), _ratio_entry(c.ratio_to(CUDNN))])
            lines.append("| " + " | ".join(row) + " |")
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


def markdown_clock_table(cells: list[CellResult]) -> str:
    """Mean SM clock and board power over each provider's timed repetitions, one row per cell
    ("" when the run recorded none, e.g. without NVML)."""
    providers = [p for p in _providers_in(cells)
                 if any(c.results.get(p) is not None and c.results[p].sm_clock_mhz is not None
                        for c in cells)]
    if not providers:
        return ""
    header = ["mode", "causal", "head_dim", "seqlen"] + [f"`{LABELS[p]}`" for p in providers]
    lines = ["## SM clock (MHz) / board power (W) while timed", "",
             "Means over NVML samples taken every 20 ms during each provider's timed repetitions; "
             "an asterisk marks timings that the software power cap held for more than half of "
             "the samples.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in cells:
        row = [c.cell.mode, "yes" if c.cell.causal else "no", str(c.cell.head_dim), str(c.cell.seqlen)]
        for p in providers:
            r = c.results.get(p)
            if r is None or r.sm_clock_mhz is None:
                row.append(DASH)
            else:
                capped = "*" if (r.power_capped or 0.0) > 0.5 else ""
                row.append(f"{r.sm_clock_mhz:.0f} / {r.power_w:.0f}{capped}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def problems(cells: list[CellResult]) -> tuple[list[str], list[str]]:
    """Human-readable failures: fa4's and its variants' (errors, wrong results, fa4's failed
    correctness checks), then the peers'."""
    ours, peers = [], []
    for c in cells:
        for p, r in c.results.items():
            if r.status == FAILED:
                mine = p == OURS or p in OUR_VARIANTS
                (ours if mine else peers).append(f"{p} failed on {c.cell.describe()}: {r.reason}")
        if c.check is not None and not c.check.ok:
            ours.append(f"fa4 WRONG on {c.cell.describe()}: {c.check.describe()}")
    return ours, peers


def markdown_report(metadata: dict, cells: list[CellResult]) -> str:
    meta = metadata
    lines = [
        "# flash_attn4 benchmark", "",
        f"Measured on one {meta.get('gpu')} (torch {meta.get('torch')}, CUDA {meta.get('cuda')}, "
        f"cuDNN {meta.get('cudnn')}, Triton {meta.get('triton')}), flash_attn4 "
        f"{meta.get('flash_attn4')}, {meta.get('date')}, in one run.",
        f"Conventions: {meta.get('dtype')}; layout (batch, seqlen, heads, head_dim); "
        "batch = 16384 / seqlen; heads = 2048 / head_dim; forward FLOPs = 4·batch·heads·seqlen²·head_dim, "
        "halved when causal; backward FLOPs = 2.5 × forward. TFLOP/s below.",
        f"Timing: {meta.get('timer')}. Backward: {meta.get('bwd_timing')}.",
        f"Warmup {meta.get('warmup_ms')} ms, timed {meta.get('rep_ms')} ms per measurement, "
        f"{meta.get('cooldown_s', 0)} s idle before each provider's timing.",
        f"Command: `{meta.get('command')}`",
    ]
    if any(meta.get(key) is not None for key in ("kv_heads", "batch", "seqlen_q")):
        queries = (f", {meta['seqlen_q']} queries per sequence (seqlen = keys; FLOPs "
                   "4·batch·heads·seqlen_q·seqlen·head_dim)" if meta.get("seqlen_q") else "")
        lines.append(f"Not the papers' grid: K / V heads {meta.get('kv_heads') or 'one per query head'}"
                     f", batch {meta.get('batch') or '16384 / seqlen'}{queries}; the peers get K / V "
                     "repeated over each GQA group (outside the timed region; their backward "
                     "includes the sum over the group).")
    if meta.get("page_size") is not None:
        lines.append(f"`fa4(paged KV)`: the forward with K / V copied into pages of "
                     f"{meta['page_size']} keys in random order, read through "
                     "`flash_attn_varlen_func`'s page_table (copy outside the timed region).")
    if "flex" in meta.get("providers", ()):
        lines.append(f"`flex(triton)` runs on head_dim {meta.get('flex_head_dims')} only "
                     "(one torch.compile per cell; --flex-head-dims).")
    if meta.get("build_info"):
        lines.append(f"flash_attn4 build: `{json.dumps(meta['build_info'], sort_keys=True)}`")
    lines += ["", "Ratios are TFLOP/s of fa4 over the best peer measured on the cell and over cuDNN. "
              "**FAIL**: fa4 raised; **WRONG**: fa4's rel L2 error against the float32 reference is "
              "above the limit (see the JSON `fa4_check`); —: not run or failed (reasons below).",
              "", markdown_tables(cells)]
    if meta.get("power_limit_w") is not None:
        lines += ["", f"Board power limit {meta['power_limit_w']:.0f} W, maximum SM clock "
                  f"{meta.get('max_sm_clock_mhz')} MHz."]
    clocks = markdown_clock_table(cells)
    if clocks:
        lines += ["", clocks]
    ours, peers = problems(cells)
    issues = ours + peers
    if issues:
        lines += ["", "## Failures", ""] + [f"- {issue}" for issue in issues]
    return "\n".join(lines) + "\n"


def write_plot(path: Path, cells: list[CellResult]) -> str | None:
    """TFLOP/s vs seqlen, one subplot per (mode, causal) row and head_dim column. Returns None on
    success, else why no plot was written (matplotlib missing)."""
    try:
        import matplotlib
        matplotlib.use("Agg")  # no display on benchmark machines
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed"
    rows = list(dict.fromkeys((c.cell.mode, c.cell.causal) for c in cells))
    head_dims = list(dict.fromkeys(c.cell.head_dim for c in cells))
    providers = _providers_in(cells)
    fig, axes = plt.subplots(len(rows), len(head_dims), squeeze=False, sharex=True,
                             figsize=(4.5 * len(head_dims), 3.2 * len(rows)))
    for i, (mode, causal) in enumerate(rows):
        for j, d in enumerate(head_dims):
            ax = axes[i][j]
            group = [c for c in cells if (c.cell.mode, c.cell.causal, c.cell.head_dim) == (mode, causal, d)]
            for p in providers:
                points = [(c.cell.seqlen, c.tflops_of(p)) for c in group if c.tflops_of(p) is not None]
                if points:
                    xs, ys = zip(*points)
                    # A fixed colour per provider keeps subplots comparable (flex is only in some).
                    ax.plot(xs, ys, marker="o", label=LABELS[p], color=f"C{PROVIDERS.index(p)}",
                            linewidth=2.5 if p == OURS else 1.2)
            seqlens = sorted({c.cell.seqlen for c in group})
            ax.set_xscale("log", base=2)
            ax.set_xticks(seqlens, [str(s) for s in seqlens])
            ax.minorticks_off()
            ax.set_ylim(bottom=0)
            ax.set_title(f"{mode}, {'causal' if causal else 'non-causal'}, d={d}", fontsize=10)
            ax.grid(True, alpha=0.3)
            if j == 0:
                ax.set_ylabel("TFLOP/s")
            if i == len(rows) - 1:
                ax.set_xlabel("seqlen")
    legend: dict[str, object] = {}  # label -> handle, across subplots (flex is only in some)
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend), loc="upper center", ncol=len(legend),
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None
