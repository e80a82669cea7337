"""The benchmark CLI's pure parts (grid, FLOPs, ratios, JSON/Markdown/plot writers) on synthetic
results: no GPU needed."""

from __future__ import annotations

import json

import pytest


from flash_attn4.bench import config, report, results


# --- grid and FLOPs -------------------------------------------------------------------------------

def test_forward_flops_formula():
    assert config.attention_flops(2, 3, 1024, 64, causal=False, mode="fwd") == 4 * 2 * 3 * 1024**2 * 64


def test_causal_halves_and_backward_is_two_and_a_half_times_forward():
    fwd = config.attention_flops(4, 16, 4096, 128, causal=False, mode="fwd")
    assert config.attention_flops(4, 16, 4096, 128, causal=True, mode="fwd") == fwd / 2
    assert config.attention_flops(4, 16, 4096, 128, causal=False, mode="bwd") == 2.5 * fwd
    assert config.attention_flops(4, 16, 4096, 128, causal=True, mode="bwd") == 1.25 * fwd


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError):
        config.attention_flops(1, 1, 128, 64, causal=False, mode="fwdbwd")


@pytest.mark.parametrize("seqlen, batch", [(1024, 16), (4096, 4), (16384, 1), (32768, 1)])
def test_batch_keeps_16k_tokens_with_a_minimum_of_one(seqlen, batch):
    assert config.Cell("fwd", False, 128, seqlen).batch == batch


@pytest.mark.parametrize("head_dim, heads", [(64, 32), (128, 16), (256, 8)])
def test_heads_keep_model_dim_2048(head_dim, heads):
    assert config.Cell("fwd", False, head_dim, 1024).heads == heads


def test_cell_flops_and_tflops():
    cell = config.Cell("bwd", True, 128, 4096)
    assert cell.flops == 2.5 * 4 * 4 * 16 * 4096**2 * 128 / 2
    assert config.tflops(2e12, 2.0) == pytest.approx(1000.0)  # 2 TFLOP in 2 ms


def test_parse_int_list():
    assert config.parse_int_list("64,128, 256") == (64, 128, 256)
    for bad in ("", "64,,128", "a,1", "0", "-64"):
        with pytest.raises(ValueError):
            config.parse_int_list(bad)


def test_parse_choices():
    assert config.parse_causal("both") == (False, True)
    assert config.parse_causal("yes") == (True,)
    assert config.parse_modes("both") == ("fwd", "bwd")
    assert config.parse_modes("bwd") == ("bwd",)


def test_parse_providers_keeps_table_order():
    assert config.parse_providers("all") == config.PROVIDERS
    assert config.parse_providers("flex, fa4") == ("fa4", "flex")
    for bad in ("bogus", "fa4,bogus", ","):
        with pytest.raises(ValueError):
            config.parse_providers(bad)


def test_grid_order_is_mode_causal_head_dim_seqlen():
    grid = config.build_grid(("fwd", "bwd"), (False, True), (64, 128), (1024, 2048, 4096))
    assert len(grid) == 2 * 2 * 2 * 3
    assert grid[0] == config.Cell("fwd", False, 64, 1024)
    assert grid[1] == config.Cell("fwd", False, 64, 2048)
    assert grid[3] == config.Cell("fwd", False, 128, 1024)
    assert grid[-1] == config.Cell("bwd", True, 128, 4096)


# --- synthetic results ----------------------------------------------------------------------------

def _ok(tflops: float) -> "results.ProviderResult":
    return results.ProviderResult(results.OK, ms=1.0, tflops=tflops, peak_mem_mib=100.0)


def _cells() -> list:
    Cell, R = config.Cell, results
    good = R.Check("fp32 sdpa", {"out": 2e-3}, 2e-2)
    return [
        R.CellResult(Cell("fwd", False, 128, 1024),
                     {"fa4": _ok(550.0), "sdpa_cudnn": _ok(500.0), "sdpa_flash": _ok(300.0),
                      "flex": R.ProviderResult(R.SKIPPED, reason="head_dim"),
                      "sdpa_efficient": R.ProviderResult(R.FAILED, reason="RuntimeError: x")},
                     good),
        R.CellResult(Cell("fwd", False, 128, 4096),
                     {"fa4": R.ProviderResult(R.FAILED, reason="NotImplementedError: d"),
                      "sdpa_cudnn": _ok(600.0), "sdpa_flash": _ok(340.0)}),
        R.CellResult(Cell("bwd", True, 64, 1024),
                     {"fa4": _ok(900.0), "sdpa_cudnn": _ok(300.0), "sdpa_flash": _ok(450.0)},
                     R.Check("fp32 sdpa", {"out": 2e-3, "dq": 0.9, "dk": 3e-3, "dv": 3e-3}, 2e-2)),
    ]


def test_ratios_use_the_best_working_peer_and_cudnn():
    first, second, third = _cells()
    assert first.best_peer() == "sdpa_cudnn"
    assert first.ratio_to(first.best_peer()) == pytest.approx(1.1)
    assert third.best_peer() == "sdpa_flash"
    assert third.ratio_to("sdpa_flash") == pytest.approx(2.0)
    assert third.ratio_to("sdpa_cudnn") == pytest.approx(3.0)
    assert second.ratio_to(second.best_peer()) is None  # fa4 failed: no ratio
    assert first.ratio_to("flex") is None  # skipped peer


def test_check_verdict():
    first, _, third = _cells()
    assert first.check.ok
    assert not third.check.ok


def test_json_round_trip(tmp_path):
    cells = _cells()
    path = tmp_path / "run.json"
    report.write_json(path, {"gpu": "NVIDIA H200", "dtype": "bf16"}, cells)
    payload = json.loads(path.read_text())
    first = payload["cells"][0]
    assert (first["batch"], first["heads"], first["flops"]) == (16, 16, cells[0].cell.flops)
    assert first["best_peer"] == "sdpa_cudnn"
    assert first["ratio_fa4_to_cudnn"] == pytest.approx(1.1)
    assert first["results"]["sdpa_efficient"] == {"status": "failed", "ms": None, "tflops": None,
                                                  "peak_mem_mib": None, "reason": "RuntimeError: x"}
    assert payload["cells"][2]["fa4_check"]["ok"] is False
    meta, back = report.read_json(path)
    assert meta["gpu"] == "NVIDIA H200"
    assert [c.to_json() for c in back] == [c.to_json() for c in cells]


def test_markdown_tables_follow_anchor_format():
    text = report.markdown_tables(_cells())
    sections = ["## " + s for s in text.split("## ")[1:]]
    assert [s.splitlines()[0] for s in sections] == ["## fwd, non-causal", "## bwd, causal"]
    lines = sections[0].splitlines()
    assert lines[2] == ("| head_dim | seqlen | `fa4` | `sdpa_cudnn` | `sdpa_flash(FA2)` | "
                        "`flex(triton)` | `sdpa_efficient` | fa4 / best peer | fa4 / cuDNN |")
    assert lines[3] == "|" + "---|" * 9
    assert lines[4] == "| 128 | 1024 | 550 | 500 | 300 | — | — | 1.10 | 1.10 |"
    assert lines[5] == "| 128 | 4096 | **FAIL** | 600 | 340 | — | — | — | — |"
    assert sections[1].splitlines()[4] == "| 64 | 1024 | 900 **WRONG** | 300 | 450 | — | — | 2.00 | 3.00 |"


def test_markdown_report_lists_our_problems_first():
    meta = {"gpu": "NVIDIA H200", "torch": "2.11", "dtype": "bf16", "command": "python -m flash_attn4.bench"}
    text = report.markdown_report(meta, _cells())
    assert text.startswith("# flash_attn4 benchmark")
    assert "NVIDIA H200" in text and "`python -m flash_attn4.bench`" in text
    failures = text.split("## Failures")[1].strip().splitlines()
    assert failures[0].startswith("- fa4 failed on fwd non-causal d=128 s=4096")
    assert failures[1].startswith("- fa4 WRONG on bwd causal d=64 s=1024")
    assert failures[2].startswith("- sdpa_efficient failed on fwd non-causal d=128 s=1024")
    ours, peers = report.problems(_cells())
    assert (len(ours), len(peers)) == (2, 1)


def test_output_stem_slugs_the_gpu_name(tmp_path):
    stem = report.output_stem(tmp_path, "NVIDIA H200 (SXM)", "20261122-021500", "my tag")
    assert stem == tmp_path / "bench_nvidia-h200-sxm_20261122-021500_my-tag"


def test_plot_is_written_or_skipped_with_a_reason(tmp_path):
    path = tmp_path / "plot.png"
    skipped = report.write_plot(path, _cells())
    if skipped is None:
        assert path.stat().st_size > 0
    else:
        assert "matplotlib" in skipped and not path.exists()
