"""The benchmark CLI's pure parts (grid, FLOPs, ratios, JSON/Markdown/plot writers) on synthetic
results: no GPU needed."""

from __future__ import annotations

import json

import pytest


from flash_attn4.bench import config, gpu_state, report, results


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


def test_query_length_cells():
    cell = config.build_grid(("fwd",), (False,), (128,), (8192,), kv_heads=2, batch=8, seqlen_q=4)[0]
    assert (cell.seqlen_q, cell.seqlen, cell.batch, cell.kv_heads) == (4, 8192, 8, 2)
    assert cell.flops == 4 * 8 * 16 * 4 * 8192 * 128
    assert "s=4x8192" in cell.describe()
    # SDPA's causal mask is top-left aligned, fa4's bottom-right: not comparable when lengths differ.
    with pytest.raises(ValueError, match="non-causal"):
        config.build_grid(("fwd",), (False, True), (128,), (8192,), seqlen_q=4)
    with pytest.raises(ValueError):
        config.attention_flops(1, 1, 128, 64, causal=True, mode="fwd", seqlen_q=8)
    back = results.cell_from_json(results.CellResult(cell).to_json()).cell
    assert back == cell


def test_nopack_provider_only_on_gqa_forward_cells():
    providers = pytest.importorskip("flash_attn4.bench.providers")
    nopack = providers.make_providers(("fa4_nopack",), (128,))[0]
    assert nopack.skip_reason(config.Cell("fwd", False, 128, 1024, kv_heads_override=4)) is None
    assert "GQA" in nopack.skip_reason(config.Cell("fwd", False, 128, 1024))
    assert nopack.skip_reason(config.Cell("bwd", False, 128, 1024, kv_heads_override=4))


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


def test_gqa_and_batch_overrides():
    cell = config.Cell("bwd", True, 128, 8192, kv_heads_override=1, batch_override=1)
    assert (cell.batch, cell.heads, cell.kv_heads) == (1, 16, 1)
    assert cell.flops == 2.5 * 4 * 1 * 16 * 8192**2 * 128 / 2  # query heads count, as for MHA
    assert "h_kv=1" in cell.describe()
    assert config.Cell("fwd", False, 64, 1024).kv_heads == 32  # default: one per query head
    grid = config.build_grid(("bwd",), (True,), (64, 128), (2048,), kv_heads=4, batch=2)
    assert [(c.kv_heads, c.batch) for c in grid] == [(4, 2), (4, 2)]
    with pytest.raises(ValueError, match="kv_heads 3 does not divide the 16 query heads"):
        config.build_grid(("fwd",), (False,), (128,), (1024,), kv_heads=3)


def test_kv_heads_and_batch_options_are_checked():
    from flash_attn4.bench import __main__ as cli

    args = cli.parse_args(["--kv-heads", "8", "--batch", "1"])
    assert (args.kv_heads, args.batch) == (8, 1)
    for bad in (["--kv-heads", "0"], ["--batch", "-1"], ["--kv-heads", "3"],
                ["--kv-heads", "16", "--head-dims", "256"]):  # 8 query heads at d 256
        with pytest.raises(SystemExit):
            cli.parse_args(bad)


def test_gqa_cells_round_trip_and_are_named_in_the_report(tmp_path):
    cell = results.CellResult(config.Cell("fwd", True, 128, 2048, 1, 1),
                              {"fa4": _ok(400.0), "sdpa_cudnn": _ok(380.0)})
    path = tmp_path / "gqa.json"
    meta = {"gpu": "NVIDIA H100", "kv_heads": 1, "batch": 1}
    report.write_json(path, meta, [cell])
    assert json.loads(path.read_text())["cells"][0]["kv_heads"] == 1
    _, back = report.read_json(path)
    assert back[0].cell == cell.cell
    assert "K / V heads 1, batch 1" in report.markdown_report(meta, back)


def test_expand_kv_follows_fa4s_head_mapping():
    """The peers and the benchmark's reference repeat K / V over each group: query head h reads
    kv head h // group, fa4's convention."""
    import torch
    from flash_attn4.bench.providers import expand_kv

    q, k, v = torch.randn(1, 5, 6, 8), torch.randn(1, 5, 2, 8), torch.randn(1, 5, 2, 4)
    q2, ke, ve = expand_kv(q, k, v)
    assert q2 is q and ke.shape == (1, 5, 6, 8) and ve.shape == (1, 5, 6, 4)
    for h in range(6):
        assert torch.equal(ke[:, :, h], k[:, :, h // 3]) and torch.equal(ve[:, :, h], v[:, :, h // 3])
    assert expand_kv(q, q, q)[1] is q  # MHA: untouched


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
                                                  "peak_mem_mib": None, "reason": "RuntimeError: x",
                                                  "sm_clock_mhz": None, "power_w": None,
                                                  "power_capped": None}
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


# --- clocks and power -----------------------------------------------------------------------------

def test_gpu_state_summary_means_and_power_cap_share():
    samples = [(1650.0, 690.0, gpu_state.SW_POWER_CAP), (1700.0, 680.0, 0x0),
               (1600.0, 700.0, gpu_state.SW_POWER_CAP | 0x1), (1650.0, 690.0, 0x1)]
    state = gpu_state.summarize(samples)
    assert state.sm_clock_mhz == pytest.approx(1650.0)
    assert state.power_w == pytest.approx(690.0)
    assert state.power_capped == pytest.approx(0.5)
    assert state.samples == 4
    assert state.result_fields() == {"sm_clock_mhz": 1650.0, "power_w": 690.0, "power_capped": 0.5}
    assert set(state.result_fields()) <= set(results.ProviderResult.__dataclass_fields__)
    assert gpu_state.summarize([]) is None


def test_sampler_without_nvml_records_nothing(monkeypatch):
    monkeypatch.setattr(gpu_state, "_nvml_handle", lambda device_index: None)
    with gpu_state.Sampler(0) as sampler:
        pass
    assert sampler.state is None


def test_sampler_summarizes_what_its_thread_read(monkeypatch):
    reads = iter([(1500.0, 650.0, gpu_state.SW_POWER_CAP)] * 3 + [(1980.0, 100.0, 0x0)] * 1000)
    monkeypatch.setattr(gpu_state, "_nvml_handle", lambda device_index: "handle")
    monkeypatch.setattr(gpu_state, "_read", lambda handle: next(reads))
    with gpu_state.Sampler(0, period_s=0.0) as sampler:
        while True:  # until the thread has taken the three capped samples and some idle ones
            if len(sampler._samples) > 5:
                break
    state = sampler.state
    assert state.samples > 5
    assert state.power_capped == pytest.approx(3 / state.samples)
    assert 1500.0 < state.sm_clock_mhz < 1980.0


def _with_clocks(cells):
    first = cells[0]
    first.results["fa4"].sm_clock_mhz, first.results["fa4"].power_w = 1745.0, 689.6
    first.results["fa4"].power_capped = 0.9
    first.results["sdpa_cudnn"].sm_clock_mhz, first.results["sdpa_cudnn"].power_w = 1662.4, 690.2
    first.results["sdpa_cudnn"].power_capped = 0.25
    return cells


def test_clock_table_lists_each_measured_provider():
    assert report.markdown_clock_table(_cells()) == ""  # no clock records: no section
    text = report.markdown_clock_table(_with_clocks(_cells()))
    lines = text.splitlines()
    assert lines[0] == "## SM clock (MHz) / board power (W) while timed"
    assert lines[4] == "| mode | causal | head_dim | seqlen | `fa4` | `sdpa_cudnn` |"
    assert lines[6] == "| fwd | no | 128 | 1024 | 1745 / 690* | 1662 / 690 |"
    assert lines[7] == "| fwd | no | 128 | 4096 | — | — |"
    meta = {"gpu": "NVIDIA H200", "power_limit_w": 700.0, "max_sm_clock_mhz": 1980}
    report_text = report.markdown_report(meta, _with_clocks(_cells()))
    assert "Board power limit 700 W, maximum SM clock 1980 MHz." in report_text
    assert "1745 / 690*" in report_text


def test_clock_fields_round_trip_and_old_files_still_load(tmp_path):
    cells = _with_clocks(_cells())
    path = tmp_path / "run.json"
    report.write_json(path, {"gpu": "NVIDIA H200"}, cells)
    _, back = report.read_json(path)
    assert back[0].results["fa4"].sm_clock_mhz == 1745.0
    assert back[0].results["sdpa_cudnn"].power_capped == 0.25
    payload = json.loads(path.read_text())
    for cell in payload["cells"]:  # a file written before the clock fields existed
        for result in cell["results"].values():
            for key in ("sm_clock_mhz", "power_w", "power_capped"):
                del result[key]
    path.write_text(json.dumps(payload))
    _, old = report.read_json(path)
    assert old[0].results["fa4"].sm_clock_mhz is None


def test_cooldown_option_defaults_and_rejects_negative():
    from flash_attn4.bench import __main__ as cli

    assert cli.parse_args([]).cooldown == cli.COOLDOWN_S
    assert cli.parse_args(["--quick"]).cooldown == cli.QUICK_COOLDOWN_S
    assert cli.parse_args(["--cooldown", "0"]).cooldown == 0.0
    with pytest.raises(SystemExit):
        cli.parse_args(["--cooldown", "-1"])


def test_report_states_the_timing_protocol():
    meta = {"gpu": "NVIDIA H200", "warmup_ms": 25.0, "rep_ms": 100.0, "cooldown_s": 0.5}
    text = report.markdown_report(meta, _cells())
    assert "Warmup 25.0 ms, timed 100.0 ms per measurement, 0.5 s idle before each provider's timing." in text


def test_command_line_records_fa4_environment(monkeypatch):
    from flash_attn4.bench import metadata

    monkeypatch.setattr("sys.argv", ["__main__.py", "--kv-heads", "1"])
    monkeypatch.delenv("FA4_BWD_HEAD_SPLITS", raising=False)
    assert metadata.command_line() == "python -m flash_attn4.bench --kv-heads 1"
    monkeypatch.setenv("FA4_BWD_HEAD_SPLITS", "4")
    assert metadata.command_line() == "FA4_BWD_HEAD_SPLITS=4 python -m flash_attn4.bench --kv-heads 1"


# --- the paged variant ----------------------------------------------------------------------------

def test_paged_provider_is_opt_in_and_its_page_size_checked():
    from flash_attn4.bench import __main__ as cli

    assert "fa4_paged" not in cli.parse_args([]).providers
    assert "fa4_paged" in cli.parse_args(["--providers", "all"]).providers
    assert cli.parse_args([]).page_size == config.DEFAULT_PAGE_SIZE
    assert cli.parse_args(["--page-size", "3"]).page_size == 3
    with pytest.raises(SystemExit):
        cli.parse_args(["--page-size", "0"])
    providers = pytest.importorskip("flash_attn4.bench.providers")
    paged = providers.make_providers(("fa4_paged",), (128,), page_size=5)[0]
    assert paged.skip_reason(config.Cell("fwd", True, 128, 1024)) is None
    assert paged.skip_reason(config.Cell("bwd", True, 128, 1024))  # paged KV has no backward


@pytest.mark.parametrize("page_size", [1, 5, 16, 64])
@pytest.mark.parametrize("causal", [False, True])
def test_paged_provider_computes_what_fa4_does(page_size, causal):
    """The paged copy and its page table address the same keys: on the CPU op, fa4_paged's output
    equals fa4's on the unpaged K / V (GQA, a ragged last page, fewer queries than keys)."""
    torch = pytest.importorskip("torch")
    providers = pytest.importorskip("flash_attn4.bench.providers")
    import flash_attn4

    gen = torch.Generator().manual_seed(page_size)
    q = torch.randn(3, 37, 4, 32, generator=gen)
    k, v = (torch.randn(3, 53, 2, 32, generator=gen) for _ in range(2))
    run = providers.make_providers(("fa4_paged",), (128,), page_size=page_size)[0].build(q, k, v, causal)
    expected = flash_attn4.flash_attn_func(q, k, v, causal=causal)
    torch.testing.assert_close(run(), expected, rtol=1e-5, atol=1e-6)


def test_variant_failures_count_as_ours():
    from flash_attn4.bench.config import Cell

    cell = results.CellResult(Cell("fwd", False, 128, 1024))
    cell.results["fa4"] = results.ProviderResult(results.OK, 1.0, 100.0)
    cell.results["fa4_paged"] = results.ProviderResult(results.FAILED, reason="wrong result")
    cell.results["flex"] = results.ProviderResult(results.FAILED, reason="compile error")
    ours, peers = report.problems([cell])
    assert [line.split()[0] for line in ours] == ["fa4_paged"]
    assert [line.split()[0] for line in peers] == ["flex"]
