"""fa4 forward and backward against the float64 reference, on every device present.

Inputs are random (never zeros); outputs and lse are poisoned with NaN before the call (through the
out= path), so an element a kernel forgets to write fails the test.
"""

import math
import zlib

import pytest
import torch

import flash_attn4 as fa
from flash_attn4.reference import attention_ref, attention_ref_varlen
from helpers import DEVICES, assert_tolerance, make_cu_seqlens, max_err, randn, ref_and_same_dtype, \
    run_or_skip_unimplemented

SEQLENS = [(1, 1), (1, 67), (67, 1), (37, 53), (128, 128), (113, 47), (200, 333)]
FEATURES = {
    "plain": {},
    "causal": dict(causal=True),
    "local": dict(window_size=(19, 7)),
    "local_left": dict(window_size=(16, -1)),
    "causal_local": dict(causal=True, window_size=(25, -1)),
    "softcap": dict(softcap=1.5),
    "scale": dict(softmax_scale=0.3),
    "sink": dict(sink=True),
    "all": dict(causal=True, window_size=(30, 0), softcap=2.0, sink=True),
}


def stable_seed(*key):
    """A per-case seed that is the same in every process (hash() of a str is salted per process,
    which made a marginal case pass or fail from run to run)."""
    return zlib.crc32(repr(key).encode())


def make_inputs(b, sq, sk, hq, hkv, d, dv, dtype, device, requires_grad=False):
    q = randn(b, sq, hq, d, dtype=dtype, device=device, requires_grad=requires_grad)
    k = randn(b, sk, hkv, d, dtype=dtype, device=device, requires_grad=requires_grad)
    v = randn(b, sk, hkv, dv, dtype=dtype, device=device, requires_grad=requires_grad)
    return q, k, v


def feature_kwargs(name, hq, device, requires_grad=False):
    kw = dict(FEATURES[name])
    if kw.pop("sink", False):
        kw["learnable_sink"] = randn(hq, device=device, requires_grad=requires_grad)
    return kw


def poisoned_fwd(q, k, v, **kw):
    """Forward through out= with NaN-poisoned out and lse, so unwritten elements stay NaN."""
    out = torch.full((*q.shape[:-1], v.shape[-1]), float("nan"), dtype=q.dtype, device=q.device)
    lse_shape = (q.shape[0], q.shape[2], q.shape[1])
    lse = torch.full(lse_shape, float("nan"), dtype=torch.float32, device=q.device)
    left, right = kw.pop("window_size", (-1, -1))
    torch.ops.fa4.fwd.out(q, k, v, learnable_sink=kw.pop("learnable_sink", None),
                          window_size_left=left, window_size_right=right, out=out, lse=lse, **kw)
    return out, lse


def check_lse(lse, ref_lse, atol):
    finite = torch.isfinite(ref_lse)
    assert torch.equal(torch.isfinite(lse), finite), "lse: -inf pattern differs from the reference"
    assert max_err(lse[finite], ref_lse[finite]) <= atol, f"lse error {max_err(lse[finite], ref_lse[finite]):.3e}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seqlens", SEQLENS, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("feature", list(FEATURES))
def test_fwd_features(device, seqlens, feature):
    torch.manual_seed(stable_seed(seqlens, feature))
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    sq, sk = seqlens
    q, k, v = make_inputs(2, sq, sk, 4, 2, 64, 64, dtype, device)
    kw = feature_kwargs(feature, 4, device)
    out, lse = run_or_skip_unimplemented(lambda: poisoned_fwd(q, k, v, **dict(kw)), device)
    (ref, ref_lse), (low, _) = ref_and_same_dtype(q, k, v, **kw)
    assert_tolerance("out", out, ref, low)
    check_lse(lse, ref_lse, atol=1e-4 if dtype == torch.float32 else 2e-2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("heads", [(4, 4), (6, 2), (4, 1)], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("dims", [(64, 64), (128, 128), (96, 64), (256, 256), (192, 128)],
                         ids=lambda d: f"d{d[0]}v{d[1]}")
def test_fwd_dtypes_heads_dims(device, dtype, heads, dims):
    if device == "cuda" and dtype == torch.float32:
        pytest.skip("CUDA kernels take fp16/bf16 (float32 is rejected: see test_bad_input)")
    torch.manual_seed(0)
    hq, hkv = heads
    d, dv = dims
    q, k, v = make_inputs(2, 77, 91, hq, hkv, d, dv, dtype, device)
    for causal in (False, True):
        out, lse = run_or_skip_unimplemented(lambda: poisoned_fwd(q, k, v, causal=causal), device)
        (ref, ref_lse), (low, _) = ref_and_same_dtype(q, k, v, causal=causal)
        assert_tolerance(f"out causal={causal}", out, ref, low)
        check_lse(lse, ref_lse, atol=1e-4 if dtype == torch.float32 else 2e-2)


def grads_of(fn, inputs, grad_out):
    out = fn(*inputs)
    return torch.autograd.grad(out, inputs, grad_out)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seqlens", [(1, 1), (37, 53), (113, 47), (128, 128)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("feature", list(FEATURES))
@pytest.mark.parametrize("heads", [(4, 4), (4, 2)], ids=["mha", "gqa"])
def test_bwd(device, seqlens, feature, heads):
    torch.manual_seed(stable_seed(seqlens, feature, heads))
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    sq, sk = seqlens
    hq, hkv = heads
    q, k, v = make_inputs(2, sq, sk, hq, hkv, 64, 64, dtype, device, requires_grad=True)
    kw = feature_kwargs(feature, hq, device, requires_grad=True)
    inputs = [q, k, v] + ([kw["learnable_sink"]] if "learnable_sink" in kw else [])
    grad_out = torch.randn(2, sq, hq, 64, dtype=dtype, device=device)

    def ours(*xs):
        extra = {"learnable_sink": xs[3]} if len(xs) == 4 else {}
        return fa.flash_attn_func(xs[0], xs[1], xs[2], **{**kw, **extra})

    def ref(compute_dtype):
        def fn(*xs):
            extra = {"learnable_sink": xs[3]} if len(xs) == 4 else {}
            return attention_ref(*xs[:3], compute_dtype=compute_dtype, **{**kw, **extra})[0]
        return fn

    got = run_or_skip_unimplemented(lambda: grads_of(ours, inputs, grad_out), device)
    want = grads_of(ref(torch.float64), inputs, grad_out)
    low = grads_of(ref(dtype if dtype != torch.float32 else torch.float32), inputs, grad_out)
    # bf16: plus half a bf16 ulp at 1. D = rowsum(dO o out) uses the rounded output, and with a
    # single key (1x1) dS = P (dP - D) cancels to a value as small as that rounding, where PyTorch's
    # bf16 softmax backward (from P, not out) can land closer by chance (~2 % of seeds on CPU bf16).
    atol = 1e-4 if dtype == torch.float32 else 2.0**-8
    for name, g, w, lo in zip(["dq", "dk", "dv", "dsink"], got, want, low):
        assert_tolerance(name, g, w, lo, atol=atol)


@pytest.mark.parametrize("device", DEVICES)
def test_bwd_through_lse(device):
    """A loss that uses lse too: dlse flows into dq/dk (and dsink)."""
    torch.manual_seed(1)
    q, k, v = make_inputs(2, 45, 60, 4, 2, 32, 32, torch.float64 if device == "cpu" else torch.bfloat16,
                          device, requires_grad=True)
    sink = randn(4, device=device, requires_grad=True)

    def loss(fn):
        out, lse = fn()
        return (out * torch.linspace(-1, 1, out.shape[-1], device=device, dtype=out.dtype)).sum() + (lse * lse).sum()

    got = run_or_skip_unimplemented(lambda: torch.autograd.grad(
        loss(lambda: fa.flash_attn_func(q, k, v, causal=True, learnable_sink=sink, return_lse=True)),
        [q, k, v, sink]), device)
    want = torch.autograd.grad(loss(lambda: attention_ref(q, k, v, causal=True, learnable_sink=sink)),
                               [q, k, v, sink])
    for name, g, w in zip(["dq", "dk", "dv", "dsink"], got, want):
        assert max_err(g, w) <= 1e-5 * max(1.0, w.abs().max().item()), name


@pytest.mark.parametrize("device", DEVICES)
def test_rows_that_see_no_key(device):
    """A window that hides every key from some rows: out = 0, lse = -inf, no NaN in gradients."""
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    q, k, v = make_inputs(1, 40, 8, 2, 2, 64, 64, dtype, device, requires_grad=True)
    # seqlen_q > seqlen_k with causal: the first 32 rows sit left of every key.
    out, lse = run_or_skip_unimplemented(lambda: fa.flash_attn_func(q, k, v, causal=True, return_lse=True), device)
    assert torch.equal(out[:, :32], torch.zeros_like(out[:, :32]))
    assert torch.isneginf(lse[:, :, :32]).all() and torch.isfinite(lse[:, :, 32:]).all()
    grads = run_or_skip_unimplemented(lambda: torch.autograd.grad(out.sum(), [q, k, v]), device)
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("device", DEVICES)
def test_seqused_batched(device):
    """seqused_q / seqused_k shorten batched sequences; rows past seqused_q read as no-key rows."""
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    q, k, v = make_inputs(3, 50, 70, 4, 4, 64, 64, dtype, device)
    used_q = torch.tensor([50, 13, 0], dtype=torch.int32, device=device)
    used_k = torch.tensor([70, 1, 33], dtype=torch.int32, device=device)
    out, lse = run_or_skip_unimplemented(lambda: torch.ops.fa4.fwd(q, k, v, seqused_q=used_q, seqused_k=used_k, causal=True), device)
    for b in range(3):
        lq, lk = int(used_q[b]), int(used_k[b])
        (ref, ref_lse), (low, _) = ref_and_same_dtype(q[b:b + 1, :lq], k[b:b + 1, :lk], v[b:b + 1, :lk], causal=True)
        assert_tolerance(f"out[{b}]", out[b:b + 1, :lq], ref, low)
        check_lse(lse[b:b + 1, :, :lq], ref_lse, atol=1e-4 if dtype == torch.float32 else 2e-2)
        assert torch.equal(out[b, lq:], torch.zeros_like(out[b, lq:]))
        assert torch.isneginf(lse[b, :, lq:]).all()


VARLEN_CASES = {
    "mixed": ([0, 5, 17, 0, 64, 33], [3, 0, 40, 9, 64, 70]),
    "single": ([1], [1]),
    "all_empty_q": ([0, 0], [5, 7]),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", list(VARLEN_CASES))
@pytest.mark.parametrize("feature", ["plain", "causal", "local", "all"])
def test_varlen(device, case, feature):
    torch.manual_seed(stable_seed(case, feature))
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    lens_q, lens_k = VARLEN_CASES[case]
    cu_q, cu_k = make_cu_seqlens(lens_q, device), make_cu_seqlens(lens_k, device)
    hq, hkv, d = 4, 2, 64
    # Two extra trailing rows in q belong to no sequence: they too must be written.
    q = randn(sum(lens_q) + 2, hq, d, dtype=dtype, device=device, requires_grad=True)
    k = randn(sum(lens_k), hkv, d, dtype=dtype, device=device, requires_grad=True)
    v = randn(sum(lens_k), hkv, d, dtype=dtype, device=device, requires_grad=True)
    kw = feature_kwargs(feature, hq, device)
    out_buf = torch.full((q.shape[0], hq, d), float("nan"), dtype=dtype, device=device)
    with torch.no_grad():
        out, lse = run_or_skip_unimplemented(lambda: fa.flash_attn_varlen_func(
            q, k, v, cu_q, cu_k, max(lens_q), max(lens_k), return_lse=True, out=out_buf, **kw), device)
    assert out.data_ptr() == out_buf.data_ptr()
    ref, ref_lse = attention_ref_varlen(q, k, v, cu_q, cu_k, **kw)
    low, _ = attention_ref_varlen(q, k, v, cu_q, cu_k, compute_dtype=torch.float32 if dtype == torch.float32 else dtype, **kw)
    assert_tolerance("out", out, ref, low)
    check_lse(lse[:, :sum(lens_q)], ref_lse[:, :sum(lens_q)], atol=1e-4 if dtype == torch.float32 else 2e-2)
    assert torch.isneginf(lse[:, sum(lens_q):]).all()

    if device == "cpu":
        grad = torch.randn_like(out)
        got = torch.autograd.grad(fa.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(lens_q), max(lens_k), **kw), [q, k, v], grad)
        def ref_grads(compute_dtype):
            ref_out = attention_ref_varlen(q, k, v, cu_q, cu_k, compute_dtype=compute_dtype, **kw)[0]
            if not ref_out.requires_grad:  # every q sequence empty: nothing depends on the inputs
                return [torch.zeros_like(x) for x in (q, k, v)]
            return torch.autograd.grad(ref_out, [q, k, v], grad.to(compute_dtype), allow_unused=True,
                                       materialize_grads=True)
        want, lows = ref_grads(torch.float64), ref_grads(torch.float32)
        for name, g, w, lo in zip(["dq", "dk", "dv"], got, want, lows):
            assert_tolerance(name, g, w, lo, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_varlen_seqused(device):
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    lens_q, lens_k = [10, 20, 7], [15, 0, 30]
    used_q, used_k = [4, 20, 0], [15, 0, 11]
    cu_q, cu_k = make_cu_seqlens(lens_q, device), make_cu_seqlens(lens_k, device)
    q = randn(sum(lens_q), 2, 32, dtype=dtype, device=device)
    k = randn(sum(lens_k), 2, 32, dtype=dtype, device=device)
    v = randn(sum(lens_k), 2, 32, dtype=dtype, device=device)
    sq = torch.tensor(used_q, dtype=torch.int32, device=device)
    sk = torch.tensor(used_k, dtype=torch.int32, device=device)
    out, lse = run_or_skip_unimplemented(lambda: fa.flash_attn_varlen_func(
        q, k, v, cu_q, cu_k, 20, 30, seqused_q=sq, seqused_k=sk, causal=True, return_lse=True), device)
    ref, ref_lse = attention_ref_varlen(q, k, v, cu_q, cu_k, seqused_q=sq, seqused_k=sk, causal=True)
    low, _ = attention_ref_varlen(q, k, v, cu_q, cu_k, seqused_q=sq, seqused_k=sk, causal=True, compute_dtype=torch.float32)
    assert_tolerance("out", out, ref, low)
    for b in range(3):  # rows past seqused_q: zeros and -inf
        rows = slice(int(cu_q[b]) + used_q[b], int(cu_q[b + 1]))
        assert torch.equal(out[rows], torch.zeros_like(out[rows])) and torch.isneginf(lse[:, rows]).all()


def paginate(k_batched, lengths, page_size, generator):
    """Scatter (b, s, h, d) keys into shuffled pages; returns pages and the page table."""
    b, s, h, d = k_batched.shape
    pages_per_seq = math.ceil(s / page_size)
    num_pages = b * pages_per_seq + 3  # spare pages that nothing points at
    perm = torch.randperm(num_pages, generator=generator)[: b * pages_per_seq].view(b, pages_per_seq)
    pages = torch.randn(num_pages, page_size, h, d, dtype=k_batched.dtype, generator=generator).to(k_batched.device)
    padded = torch.nn.functional.pad(k_batched, (0, 0, 0, 0, 0, pages_per_seq * page_size - s))
    for i in range(b):
        pages[perm[i]] = padded[i].view(pages_per_seq, page_size, h, d)
    return pages, perm.to(torch.int32).to(k_batched.device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("page_size", [1, 7, 16, 64, 256])
def test_paged_kv(device, page_size):
    gen = torch.Generator().manual_seed(page_size)
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    lens_q, lens_k = [5, 1, 30], [100, 37, 300]
    cu_q = make_cu_seqlens(lens_q, device)
    q = torch.randn(sum(lens_q), 4, 64, generator=gen).to(device, dtype)
    k_b = torch.randn(3, max(lens_k), 2, 64, generator=gen).to(device, dtype)
    v_b = torch.randn(3, max(lens_k), 2, 64, generator=gen).to(device, dtype)
    k_pages, table = paginate(k_b, lens_k, page_size, gen)
    v_pages, _ = paginate(v_b, lens_k, page_size, torch.Generator().manual_seed(page_size))
    # Rebuild v's pages with k's table so both share one page table.
    for i in range(3):
        n = table.shape[1]
        padded = torch.nn.functional.pad(v_b[i], (0, 0, 0, 0, 0, n * page_size - max(lens_k)))
        v_pages[table[i].long()] = padded.view(n, page_size, 2, 64)
    used_k = torch.tensor(lens_k, dtype=torch.int32, device=device)
    with torch.no_grad():
        out, lse = run_or_skip_unimplemented(lambda: fa.flash_attn_varlen_func(
            q, k_pages, v_pages, cu_q, None, max(lens_q), None, causal=True, seqused_k=used_k,
            page_table=table, return_lse=True), device)
    for b in range(3):
        rows = slice(int(cu_q[b]), int(cu_q[b + 1]))
        (ref, ref_lse), (low, _) = ref_and_same_dtype(q[rows].unsqueeze(0), k_b[b:b + 1, :lens_k[b]],
                                                      v_b[b:b + 1, :lens_k[b]], causal=True)
        assert_tolerance(f"out[{b}]", out[rows].unsqueeze(0), ref, low)
        check_lse(lse[:, rows].unsqueeze(0), ref_lse, atol=1e-4 if dtype == torch.float32 else 2e-2)


def test_paged_kv_has_no_backward():
    q = randn(4, 2, 32, requires_grad=True)
    k = randn(2, 4, 2, 32)
    table = torch.tensor([[0, 1]], dtype=torch.int32)
    cu = torch.tensor([0, 4], dtype=torch.int32)
    with pytest.raises(NotImplementedError, match="paged"):
        fa.flash_attn_varlen_func(q, k, k, cu, None, 4, None, page_table=table)


def test_qkvpacked_matches_unpacked():
    qkv = randn(2, 33, 3, 4, 32)
    packed = fa.flash_attn_qkvpacked_func(qkv, causal=True)
    unpacked = fa.flash_attn_func(*qkv.unbind(2), causal=True)
    assert torch.equal(packed, unpacked)


@pytest.mark.parametrize("device", DEVICES)
def test_repeatable_bitwise(device):
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    q, k, v = make_inputs(2, 130, 130, 4, 2, 64, 64, dtype, device, requires_grad=device == "cpu")
    first = run_or_skip_unimplemented(lambda: fa.flash_attn_func(q, k, v, causal=True), device)
    for _ in range(3):
        assert torch.equal(fa.flash_attn_func(q, k, v, causal=True), first)
    if device == "cpu":
        g = torch.randn_like(first)
        grads = torch.autograd.grad(fa.flash_attn_func(q, k, v, deterministic=True), [q, k, v], g)
        for _ in range(2):
            again = torch.autograd.grad(fa.flash_attn_func(q, k, v, deterministic=True), [q, k, v], g)
            assert all(torch.equal(a, b) for a, b in zip(grads, again))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu_kernel():
    """The CUDA kernel and the CPU kernel agree on the same inputs (within the bf16 rule)."""
    q, k, v = make_inputs(2, 300, 300, 4, 2, 128, 128, torch.bfloat16, "cuda")
    out_gpu = run_or_skip_unimplemented(lambda: fa.flash_attn_func(q, k, v, causal=True), "cuda")
    out_cpu = fa.flash_attn_func(q.cpu(), k.cpu(), v.cpu(), causal=True)
    ref, low = ref_and_same_dtype(q.cpu(), k.cpu(), v.cpu(), causal=True)
    assert max_err(out_gpu.cpu(), out_cpu) <= 2 * max_err(low[0], ref[0]) + 1e-3
