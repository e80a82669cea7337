"""python -m flash_attn4.bench: TFLOP/s of flash_attn4 against SDPA backends and FlexAttention on
the same GPU in one run (see bench/README.md). Exits 1 if fa4 failed or was wrong on any cell."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

import torch

from . import config, cpu_check, metadata, report
from .providers import make_providers
from .results import CellResult
from .runner import BWD_TIMING, run_grid
from .timing import timer_description

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Full runs use triton's default budgets; --quick trades stability for a ~minute run.
WARMUP_MS, REP_MS = 25.0, 100.0
QUICK_WARMUP_MS, QUICK_REP_MS = 10.0, 30.0
# Idle seconds before each provider's timing. Without it a provider inherited the power state the
# one before it left: at the 1k cells, which follow the previous head dim's 16k cell, fa4 was timed
# at 1680-1930 MHz right after cuDNN's long run while cuDNN, timed after fa4's correctness check,
# ran at 1980 (H200, 700 W power cap; bench/PERF_NOTES.md, 2026-11-24).
COOLDOWN_S, QUICK_COOLDOWN_S = 0.5, 0.1


def log(line: str) -> None:
    print(line, flush=True)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return config.parse_int_list(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _providers(text: str) -> tuple[str, ...]:
    try:
        return config.parse_providers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m flash_attn4.bench", description=__doc__)
    p.add_argument("--dtype", choices=DTYPES, default="bf16")
    p.add_argument("--head-dims", type=_int_list, default=None,
                   help=f"comma-separated (default {','.join(map(str, config.DEFAULT_HEAD_DIMS))})")
    p.add_argument("--seqlens", type=_int_list, default=None,
                   help=f"comma-separated (default {','.join(map(str, config.DEFAULT_SEQLENS))})")
    p.add_argument("--causal", choices=("both", "no", "yes"), default="both")
    p.add_argument("--mode", choices=("fwd", "bwd", "both"), default="both")
    p.add_argument("--providers", type=_providers, default=config.DEFAULT_PROVIDERS,
                   help=f"'all' or a comma-separated subset of {','.join(config.PROVIDERS)} "
                        f"(default: all but fa4_paged)")
    p.add_argument("--kv-heads", type=int, default=None,
                   help="K / V heads (GQA / MQA; must divide 2048 / head_dim; default: one per "
                        "query head). The peers get K / V repeated over each group")
    p.add_argument("--batch", type=int, default=None,
                   help="batch size of every cell (default 16384 / seqlen)")
    p.add_argument("--seqlen-q", type=int, default=None,
                   help="query length of every cell, the keys' being --seqlens (decoding, chunked "
                        "prefill; needs --causal no)")
    p.add_argument("--num-splits", type=int, default=1,
                   help="fa4's num_splits (split-KV; 0: automatic, 1: none; default 1, "
                        "flash-attn's default)")
    p.add_argument("--page-size", type=int, default=config.DEFAULT_PAGE_SIZE,
                   help=f"keys per page of fa4_paged's K / V cache (default "
                        f"{config.DEFAULT_PAGE_SIZE})")
    p.add_argument("--flex-head-dims", type=_int_list, default=config.DEFAULT_FLEX_HEAD_DIMS,
                   help="head dims flex runs on (default 128: it compiles for every cell)")
    p.add_argument("--quick", action="store_true",
                   help=f"tiny grid: head dims {config.QUICK_HEAD_DIMS}, seqlens "
                        f"{config.QUICK_SEQLENS}, shorter timing (explicit options still win)")
    p.add_argument("--out-dir", type=Path, default=Path("bench/results"))
    p.add_argument("--tag", default=None, help="file name suffix (default 'quick' or 'full')")
    p.add_argument("--warmup", type=float, default=None, help=f"warmup ms (default {WARMUP_MS:g})")
    p.add_argument("--rep", type=float, default=None, help=f"timed ms per measurement (default {REP_MS:g})")
    p.add_argument("--cooldown", type=float, default=None,
                   help=f"idle seconds before each provider's timing, so none inherits the power "
                        f"state of the one before (default {COOLDOWN_S:g}); a long --warmup "
                        f"instead measures each provider in its own sustained state")
    p.add_argument("--report", type=Path, default=None, metavar="JSON",
                   help="re-render the .md and .png of a saved result JSON (no GPU needed) and exit")
    args = p.parse_args(argv)
    if args.head_dims is None:
        args.head_dims = config.QUICK_HEAD_DIMS if args.quick else config.DEFAULT_HEAD_DIMS
    if args.seqlens is None:
        args.seqlens = config.QUICK_SEQLENS if args.quick else config.DEFAULT_SEQLENS
    if args.warmup is None:
        args.warmup = QUICK_WARMUP_MS if args.quick else WARMUP_MS
    if args.rep is None:
        args.rep = QUICK_REP_MS if args.quick else REP_MS
    if args.cooldown is None:
        args.cooldown = QUICK_COOLDOWN_S if args.quick else COOLDOWN_S
    if args.cooldown < 0:
        p.error(f"--cooldown must be >= 0 seconds, got {args.cooldown:g}")
    for name in ("kv_heads", "batch", "seqlen_q", "page_size"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            p.error(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if args.kv_heads is not None:
        try:
            config.build_grid(("fwd",), (False,), args.head_dims, args.seqlens[:1], args.kv_heads)
        except ValueError as exc:
            p.error(f"--kv-heads: {exc}")
    if args.seqlen_q is not None and args.causal != "no":
        p.error("--seqlen-q needs --causal no (SDPA aligns a causal mask top-left, fa4 "
                "bottom-right: with unequal lengths they differ)")
    if args.tag is None:
        args.tag = "quick" if args.quick else "full"
    return args


def write_outputs(stem: Path, meta: dict, cells: list[CellResult], with_json: bool) -> None:
    """stem.json (unless re-rendering one), stem.md and stem.png; prints the Markdown."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    if with_json:
        report.write_json(stem.with_suffix(".json"), meta, cells)
    markdown = report.markdown_report(meta, cells)
    stem.with_suffix(".md").write_text(markdown)
    log("\n" + markdown)
    skipped = report.write_plot(stem.with_suffix(".png"), cells)
    if skipped is not None:
        log(f"No plot: {skipped}.")
    written = [".json"] * with_json + [".md"] + [".png"] * (skipped is None)
    log("Wrote " + ", ".join(str(stem.with_suffix(s)) for s in written))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report is not None:
        meta, cells = report.read_json(args.report)
        write_outputs(args.report.with_suffix(""), meta, cells, with_json=False)
        return 0
    if not torch.cuda.is_available():
        log("No CUDA GPU available (torch.cuda.is_available() is False): nothing to benchmark. "
            "Checking the CPU op against the float64 reference instead.")
        return 0 if cpu_check.run(log) else 1

    now = datetime.now().astimezone()
    cells = config.build_grid(config.parse_modes(args.mode), config.parse_causal(args.causal),
                              args.head_dims, args.seqlens, args.kv_heads, args.batch,
                              args.seqlen_q)
    if args.num_splits < 0:
        log(f"--num-splits must be >= 0, got {args.num_splits}")
        return 2
    providers = make_providers(args.providers, args.flex_head_dims, args.num_splits, args.page_size)
    meta = metadata.collect(now)
    meta.update(dtype=args.dtype, timer=timer_description(), bwd_timing=BWD_TIMING,
                warmup_ms=args.warmup, rep_ms=args.rep, cooldown_s=args.cooldown,
                providers=list(args.providers),
                flex_head_dims=list(args.flex_head_dims), kv_heads=args.kv_heads,
                batch=args.batch, seqlen_q=args.seqlen_q, num_splits=args.num_splits,
                page_size=args.page_size if "fa4_paged" in args.providers else None)
    log(f"{meta['gpu']} | torch {meta['torch']} CUDA {meta['cuda']} cuDNN {meta['cudnn']} "
        f"triton {meta['triton']} | flash_attn4 {meta['flash_attn4']}")
    log(f"{len(cells)} cells x {len(providers)} providers, {args.dtype}, "
        f"warmup {args.warmup:g} ms, rep {args.rep:g} ms, cooldown {args.cooldown:g} s")
    results = run_grid(cells, providers, DTYPES[args.dtype], args.warmup, args.rep, log,
                       cooldown_s=args.cooldown)
    meta["finished"] = datetime.now().astimezone().isoformat(timespec="seconds")

    stem = report.output_stem(args.out_dir, meta["gpu"], now.strftime("%Y%m%d-%H%M%S"), args.tag)
    write_outputs(stem, meta, results, with_json=True)
    ours, _ = report.problems(results)
    if ours:
        log(f"\n!!! fa4 failed or was wrong on {len(ours)} cell(s):")
        for issue in ours:
            log(f"!!!   {issue}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
