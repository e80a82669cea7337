"""The CUDA backward over the kernel grid (issue 4): dtypes x head dims x masks x GQA x seqlens,
varlen with empty sequences, determinism, CPU agreement, a dQ accumulator past 2^31 elements.
CUDA only; configurations the kernel does not cover raise NotImplementedError and are reported as
skips with the reason.

Gradient buffers: the op allocates dq/dk/dv itself, zero-filled only where some rows belong to no
sequence (or no query sees some keys); elsewhere the kernels must write every row. Each test first
hands torch's caching allocator blocks full of NaN (nan_filled_allocator), so an unfilled buffer
starts as NaN and a row the kernel forgets fails; a forgotten in-sequence row of a zero-filled
buffer stays 0 and fails wherever the reference gradient is nonzero, which random inputs make every
in-sequence row of dq/dk/dv that sees (or is seen by) a key.
"""

import pytest
import torch

import flash_attn4 as fa
from flash_attn4.reference import attention_ref
from helpers import CUDA, assert_tolerance, make_cu_seqlens, run_or_skip_unimplemented
from test_cuda_fwd import DIMS, DTYPES, HEADS, MASKS, SEQLENS  # the forward's grid, shared

pytestmark = pytest.mark.skipif(not CUDA, reason="no CUDA device")


@pytest.fixture(autouse=True)
def nan_filled_allocator():
    big = torch.full((64 << 20,), float("nan"), device="cuda")  # 256 MiB: the large-block pool
    small = [torch.full((64 << 10,), float("nan"), device="cuda") for _ in range(32)]  # < 1 MiB pool
    del big, small
    yield


# A GQA group's query heads are shared out over head_splits CTAs per (key block, kv head) when
# there are too few kv heads to fill the GPU (bwd_api.cu picks the count from the SM count);
# FA4_BWD_HEAD_SPLITS forces it, so both paths run on any GPU: "1" = one CTA loops over the whole
# group, "8" = one query head per CTA (the largest count <= n that divides the group is used).
def force_head_splits(monkeypatch, splits):
    if splits == "auto":
        monkeypatch.delenv("FA4_BWD_HEAD_SPLITS", raising=False)
    else:
        monkeypatch.setenv("FA4_BWD_HEAD_SPLITS", splits)


def leaf(t):
    return t.detach().requires_grad_(True)


def grads(fn, inputs, grad_out):
    return torch.autograd.grad(fn(*inputs), inputs, grad_out)


def check_grads(q, k, v, kw, grad_out, sink=None, atol=2e-3):
    inputs = [leaf(q), leaf(k), leaf(v)] + ([leaf(sink)] if sink is not None else [])
    names = ["dq", "dk", "dv", "dsink"]

    def ours(*xs):
        extra = {"learnable_sink": xs[3]} if len(xs) == 4 else {}
        return fa.flash_attn_func(*xs[:3], **kw, **extra)

    def ref(dtype):
        def fn(*xs):
            extra = {"learnable_sink": xs[3]} if len(xs) == 4 else {}
            return attention_ref(*xs[:3], compute_dtype=dtype, **kw, **extra)[0]
        return fn

    got = run_or_skip_unimplemented(lambda: grads(ours, inputs, grad_out), "cuda")
    want = grads(ref(torch.float32), inputs, grad_out)
    low = grads(ref(q.dtype), inputs, grad_out)
    for name, g, w, lo in zip(names, got, want, low):
        assert_tolerance(name, g, w, lo, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("dims", DIMS, ids=lambda d: f"d{d[0]}v{d[1]}")
@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("heads", list(HEADS))
@pytest.mark.parametrize("seqlens", SEQLENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_bwd_grid(dtype, dims, mask, heads, seqlens):
    torch.manual_seed(0)
    (d, dv), (hq, hkv), (sq, sk) = dims, HEADS[heads], seqlens
    q = torch.randn(2, sq, hq, d, device="cuda", dtype=dtype)
    k = torch.randn(2, sk, hkv, d, device="cuda", dtype=dtype)
    v = torch.randn(2, sk, hkv, dv, device="cuda", dtype=dtype)
    grad_out = torch.randn(2, sq, hq, dv, device="cuda", dtype=dtype)
    kw = dict(MASKS[mask])
    sink = torch.randn(hq, device="cuda") if kw.pop("sink", False) else None
    check_grads(q, k, v, kw, grad_out, sink)


@pytest.mark.parametrize("splits", ["auto", "1", "4"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mask", ["none", "causal", "local"])
def test_bwd_varlen(monkeypatch, dtype, mask, splits):
    """Packed sequences with empty ones, GQA: each sequence against its own reference, with the
    group's query heads in one CTA, split over four, and as the SM count picks."""
    force_head_splits(monkeypatch, splits)
    torch.manual_seed(0)
    lens_q, lens_k = [0, 300, 1, 2100, 77, 0, 130], [5, 280, 1000, 2100, 0, 64, 129]
    cu_q, cu_k = make_cu_seqlens(lens_q, "cuda"), make_cu_seqlens(lens_k, "cuda")
    hq, hkv, d = 8, 2, 128
    q = torch.randn(sum(lens_q), hq, d, device="cuda", dtype=dtype, requires_grad=True)
    k = torch.randn(sum(lens_k), hkv, d, device="cuda", dtype=dtype, requires_grad=True)
    v = torch.randn(sum(lens_k), hkv, d, device="cuda", dtype=dtype, requires_grad=True)
    grad_out = torch.randn(sum(lens_q), hq, d, device="cuda", dtype=dtype)
    kw = dict(MASKS[mask])
    out = run_or_skip_unimplemented(lambda: fa.flash_attn_varlen_func(
        q, k, v, cu_q, cu_k, max(lens_q), max(lens_k), **kw), "cuda")
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), grad_out)
    for b in range(len(lens_q)):
        rows, keys = slice(int(cu_q[b]), int(cu_q[b + 1])), slice(int(cu_k[b]), int(cu_k[b + 1]))
        if lens_q[b] == 0 or lens_k[b] == 0:
            assert not dk[keys].any() and not dv[keys].any() and not dq[rows].any()
            continue
        inputs = [leaf(q[rows][None]), leaf(k[keys][None]), leaf(v[keys][None])]
        go = grad_out[rows][None]
        want = grads(lambda *x: attention_ref(*x, compute_dtype=torch.float32, **kw)[0], inputs, go)
        low = grads(lambda *x: attention_ref(*x, compute_dtype=dtype, **kw)[0], inputs, go)
        for name, g, w, lo in zip(["dq", "dk", "dv"], (dq[rows][None], dk[keys][None], dv[keys][None]),
                                  want, low):
            assert_tolerance(f"{name}[{b}]", g, w, lo, atol=2e-3)


@pytest.mark.parametrize("splits", ["1", "2", "8"])
@pytest.mark.parametrize("d", [64, 128, 256])
@pytest.mark.parametrize("mask", ["none", "causal", "local", "causal_softcap_sink"])
@pytest.mark.parametrize("heads", ["gqa", "mqa"])
@pytest.mark.parametrize("seqlens", [(1000, 999), (113, 4097)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_bwd_gqa_head_splits(monkeypatch, splits, d, mask, heads, seqlens):
    force_head_splits(monkeypatch, splits)
    torch.manual_seed(0)
    (hq, hkv), (sq, sk) = HEADS[heads], seqlens
    q = torch.randn(1, sq, hq, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, sk, hkv, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(1, sk, hkv, d, device="cuda", dtype=torch.bfloat16)
    grad_out = torch.randn(1, sq, hq, d, device="cuda", dtype=torch.bfloat16)
    kw = dict(MASKS[mask])
    sink = torch.randn(hq, device="cuda") if kw.pop("sink", False) else None
    check_grads(q, k, v, kw, grad_out, sink)


@pytest.mark.parametrize("splits", ["1", "4"])
@pytest.mark.parametrize("mask", ["none", "causal"])
def test_bwd_seqused_gqa(monkeypatch, splits, mask):
    """Batched sequences shortened by seqused_q / seqused_k (one with no query rows, one with a
    single key), GQA, the group in one CTA and split over four: each sequence's gradients against
    its reference, rows past seqused zero."""
    force_head_splits(monkeypatch, splits)
    torch.manual_seed(0)
    hq, hkv, d, sq, sk = 8, 2, 128, 300, 400
    q = torch.randn(3, sq, hq, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(3, sk, hkv, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(3, sk, hkv, d, device="cuda", dtype=torch.bfloat16)
    dout = torch.randn(3, sq, hq, d, device="cuda", dtype=torch.bfloat16)
    used_q = torch.tensor([300, 77, 0], dtype=torch.int32, device="cuda")
    used_k = torch.tensor([400, 1, 250], dtype=torch.int32, device="cuda")
    kw = dict(seqused_q=used_q, seqused_k=used_k, causal=mask == "causal")
    out, lse = run_or_skip_unimplemented(lambda: torch.ops.fa4.fwd(q, k, v, **kw), "cuda")
    dq, dk, dv = torch.ops.fa4.bwd(dout, q, k, v, out, lse, **kw)[:3]
    for b in range(3):
        lq, lk = int(used_q[b]), int(used_k[b])
        assert not dq[b, lq:].any() and not dk[b, lk:].any() and not dv[b, lk:].any()
        if lq == 0:
            assert not dk[b].any() and not dv[b].any()
            continue
        inputs = [leaf(q[b:b + 1, :lq]), leaf(k[b:b + 1, :lk]), leaf(v[b:b + 1, :lk])]
        go = dout[b:b + 1, :lq]
        ref = lambda dtype: grads(lambda *x: attention_ref(*x, causal=kw["causal"],
                                                           compute_dtype=dtype)[0], inputs, go)
        for name, g, w, lo in zip(["dq", "dk", "dv"],
                                  (dq[b:b + 1, :lq], dk[b:b + 1, :lk], dv[b:b + 1, :lk]),
                                  ref(torch.float32), ref(torch.bfloat16)):
            assert_tolerance(f"{name}[{b}]", g, w, lo, atol=2e-3)


@pytest.mark.parametrize("splits", ["1", "4"])
@pytest.mark.parametrize("d", [64, 96, 128, 192, 256])
def test_bwd_deterministic(monkeypatch, d, splits):
    """deterministic=True: dq, dk, dv bitwise identical over 100 runs (causal GQA, several key
    blocks per query block so the dQ additions really race without the ordering), with the group
    in one CTA and split over four."""
    force_head_splits(monkeypatch, splits)
    torch.manual_seed(0)
    q = torch.randn(2, 1500, 8, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(2, 1500, 2, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(2, 1500, 2, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    grad_out = torch.randn(2, 1500, 8, d, device="cuda", dtype=torch.bfloat16)

    def run():
        out = fa.flash_attn_func(q, k, v, causal=True, deterministic=True)
        return torch.autograd.grad(out, (q, k, v), grad_out)

    first = run_or_skip_unimplemented(run, "cuda")
    for i in range(100):
        again = run()
        for name, a, b in zip(["dq", "dk", "dv"], first, again):
            assert torch.equal(a, b), f"{name} differs on run {i + 1}"


# The main kernel is a programmatic dependent launch of the preprocess (its setup and K / V loads
# overlap the preprocess's end; it waits for the preprocess before reading lse / D / the zeroed
# accumulator), and the dQ convert one of the main kernel: it starts on the SMs the main kernel's
# last wave leaves idle and waits per (batch, head) for the key blocks that add into it
# (bwd_api.cu). FA4_BWD_SERIAL_MAIN=1 / FA4_BWD_SERIAL_CONVERT=1 launch them after their
# predecessor has ended; FA4_BWD_ZERO_DQ_ACCUM=1 has the preprocess zero the dQ accumulator and
# every key block add into it (by default each query block's first writer stores instead). Same
# bits every way (deterministic mode fixes the dQ summation order),
# including masks and sequences where the main kernel skips key blocks (the count the convert
# waits for must match exactly: too high hangs, too low races), and keys of length 0 (no main
# kernel: the convert then follows the preprocess, which triggers its dependents early, so it
# must not be a dependent launch there).
@pytest.mark.parametrize("serial", ["main", "convert", "main,convert", "zero_dq_accum"])
@pytest.mark.parametrize("case", ["causal_gqa", "window_unequal", "varlen_causal", "d256_causal",
                                  "gqa_split4", "no_keys"])
def test_bwd_pdl_matches_serial(monkeypatch, case, serial):
    torch.manual_seed(0)
    dt = torch.bfloat16
    varlen = case == "varlen_causal"
    if case == "gqa_split4":
        force_head_splits(monkeypatch, "4")
    d = {"window_unequal": 64, "d256_causal": 256}.get(case, 128)
    if varlen:
        lens_q, lens_k = [0, 300, 1, 1100, 77], [5, 280, 900, 1000, 0]
        cu_q, cu_k = make_cu_seqlens(lens_q, "cuda"), make_cu_seqlens(lens_k, "cuda")
        shapes = [(sum(lens_q), 4, d), (sum(lens_k), 2, d), (sum(lens_k), 2, d), (sum(lens_q), 4, d)]
    else:
        sq, sk = {"window_unequal": (300, 1000), "no_keys": (700, 0)}.get(case, (1100, 1100))
        hq, hkv = (8, 2) if case in ("causal_gqa", "gqa_split4") else (4, 4)
        shapes = [(2, sq, hq, d), (2, sk, hkv, d), (2, sk, hkv, d), (2, sq, hq, d)]
    q, k, v, grad_out = (torch.randn(*sh, device="cuda", dtype=dt) for sh in shapes)
    kw = dict(window_size=(50, 7)) if case == "window_unequal" else dict(causal=True)

    def run():
        if case == "no_keys":  # the op directly (the user functions' autograd needs no keys here)
            out, lse = torch.ops.fa4.fwd(q, k, v)
            dq = torch.ops.fa4.bwd(grad_out, q, k, v, out, lse)[0]
            assert torch.equal(dq, torch.zeros_like(dq))
            return (dq,)
        inputs = [leaf(q), leaf(k), leaf(v)]
        if varlen:
            out = fa.flash_attn_varlen_func(*inputs, cu_q, cu_k, max(lens_q), max(lens_k),
                                            deterministic=True, **kw)
        else:
            out = fa.flash_attn_func(*inputs, deterministic=True, **kw)
        return torch.autograd.grad(out, inputs, grad_out)

    overlapped = run()
    for stage in serial.split(","):
        name = "ZERO_DQ_ACCUM" if stage == "zero_dq_accum" else f"SERIAL_{stage.upper()}"
        monkeypatch.setenv(f"FA4_BWD_{name}", "1")
    serialized = run()
    for name, a, b in zip(["dq", "dk", "dv"], overlapped, serialized):
        assert torch.equal(a, b), name


def test_bwd_cuda_graph_replay():
    """Forward and backward captured in a CUDA graph (the dQ convert's programmatic dependent
    launch becomes a programmatic edge) and replayed on new inputs: the eager results, bitwise."""
    torch.manual_seed(0)
    shape = (2, 700, 4, 128)
    static = [torch.randn(shape, device="cuda", dtype=torch.bfloat16) for _ in range(4)]

    def step(q, k, v, go):
        inputs = [leaf(q), leaf(k), leaf(v)]
        out = fa.flash_attn_func(*inputs, causal=True, deterministic=True)
        return torch.autograd.grad(out, inputs, go)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step(*static)  # warm-up outside the capture (allocations, lazy init)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step(*static)
    for _ in range(3):
        fresh = [torch.randn(shape, device="cuda", dtype=torch.bfloat16) for _ in range(4)]
        for dst, src in zip(static, fresh):
            dst.copy_(src)
        graph.replay()
        torch.cuda.synchronize()
        for name, got, want in zip(["dq", "dk", "dv"], captured, step(*fresh)):
            assert torch.equal(got, want), name


def test_bwd_cuda_matches_cpu_kernel():
    """The CUDA and CPU backward kernels on the same (CUDA-forward) out / lse."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 300, h, 128, device="cuda", dtype=torch.bfloat16) for h in (4, 2, 2))
    out, lse = run_or_skip_unimplemented(lambda: torch.ops.fa4.fwd(q, k, v, causal=True), "cuda")
    dout = torch.randn_like(out)
    got = run_or_skip_unimplemented(
        lambda: torch.ops.fa4.bwd(dout, q, k, v, out, lse, causal=True), "cuda")[:3]
    cpu = torch.ops.fa4.bwd(*(t.cpu() for t in (dout, q, k, v, out, lse)), causal=True)[:3]
    for name, g, c in zip(["dq", "dk", "dv"], got, cpu):
        err = (g.cpu().float() - c.float()).abs().max().item()
        scale = c.float().abs().max().item()
        assert err <= 2e-2 * scale, f"{name}: CUDA vs CPU max difference {err:.3e} (max |grad| {scale:.3e})"


@pytest.mark.serial
def test_bwd_dq_accumulator_past_int32():
    """The fp32 dQ accumulator holds heads * rows * d > 2^31 elements: the last head's rows sit past
    element 2^31 (upstream overflowed an int32 index there)."""
    torch.manual_seed(0)
    hq, d, sq, sk = 128, 128, 135000, 64
    assert hq * sq * d > 2**31
    q = torch.randn(1, sq, hq, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, sk, 1, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(1, sk, 1, d, device="cuda", dtype=torch.bfloat16)
    out, lse = run_or_skip_unimplemented(lambda: torch.ops.fa4.fwd(q, k, v), "cuda")
    dout = torch.randn_like(out)
    dq = run_or_skip_unimplemented(lambda: torch.ops.fa4.bwd(dout, q, k, v, out, lse), "cuda")[0]
    rows = slice(sq - 2000, sq)  # of the last head
    inputs = [leaf(q[:, rows, -1:]), leaf(k), leaf(v)]
    go = dout[:, rows, -1:]
    want = grads(lambda *x: attention_ref(*x, compute_dtype=torch.float32)[0], inputs, go)[0]
    low = grads(lambda *x: attention_ref(*x, compute_dtype=torch.bfloat16)[0], inputs, go)[0]
    assert_tolerance("dq[last head]", dq[:, rows, -1:], want, low, atol=2e-3)
