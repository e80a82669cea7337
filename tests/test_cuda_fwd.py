"""The CUDA forward over the kernel grid (issue 3): dtypes x head dims x masks x GQA x seqlens,
varlen, paged KV, int64 offsets, repeatability. CUDA only; configurations the kernel does not cover
raise NotImplementedError and are reported as skips with the reason."""

import pytest
import torch

import flash_attn4 as fa
from flash_attn4.reference import attention_ref
from helpers import CUDA, assert_tolerance, make_cu_seqlens, max_err, run_or_skip_unimplemented

pytestmark = pytest.mark.skipif(not CUDA, reason="no CUDA device")

DTYPES = [torch.bfloat16, torch.float16]
DIMS = [(64, 64), (96, 96), (128, 128), (192, 192), (256, 256), (192, 128)]
MASKS = {
    "none": {},
    "causal": dict(causal=True),
    "local": dict(window_size=(129, 64)),
    "softcap": dict(softcap=15.0),
    "sink": dict(sink=True),
    "causal_softcap_sink": dict(causal=True, softcap=15.0, sink=True),
}
HEADS = {"mha": (8, 8), "gqa": (8, 2), "mqa": (8, 1)}
SEQLENS = [(1, 1), (1, 4224), (113, 4097), (1000, 999), (2047, 129), (4224, 4224)]


def poisoned(q, k, v, **kw):
    out = torch.full((*q.shape[:-1], v.shape[-1]), float("nan"), dtype=q.dtype, device=q.device)
    lse = torch.full((q.shape[0], q.shape[2], q.shape[1]), float("nan"), device=q.device)
    left, right = kw.pop("window_size", (-1, -1))
    torch.ops.fa4.fwd.out(q, k, v, window_size_left=left, window_size_right=right, out=out, lse=lse, **kw)
    torch.cuda.synchronize()
    return out, lse


def inputs(b, sq, sk, hq, hkv, d, dv, mask):
    """Random bf16 q, k, v and the op's keyword arguments for one of MASKS (a sink drawn here)."""
    q = torch.randn(b, sq, hq, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(b, sk, hkv, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(b, sk, hkv, dv, device="cuda", dtype=torch.bfloat16)
    kw = dict(MASKS[mask])
    if kw.pop("sink", False):
        kw["learnable_sink"] = torch.randn(hq, device="cuda")
    return q, k, v, kw


def check(q, k, v, kw, **hints):
    """out and lse (poisoned first) against the fp32 reference; hints (pack_gqa, num_splits) go to
    the op only. Returns out."""
    out, lse = run_or_skip_unimplemented(lambda: poisoned(q, k, v, **hints, **dict(kw)), "cuda")
    ref, ref_lse = attention_ref(q, k, v, compute_dtype=torch.float32, **kw)
    low, _ = attention_ref(q, k, v, compute_dtype=q.dtype, **kw)
    assert_tolerance("out", out, ref, low, atol=1e-3)
    finite = torch.isfinite(ref_lse)
    assert torch.equal(torch.isfinite(lse), finite)
    assert max_err(lse[finite], ref_lse[finite]) <= 1e-2
    return out


def paged_cache(lens_k, page_size, hkv, d, d_v):
    """Random K / V caches in randomly ordered pages for sequences of lens_k keys:
    (page_table, k_pages, v_pages, seqused_k)."""
    b, pages_per_seq = len(lens_k), -(-max(lens_k) // page_size)
    table = torch.randperm(b * pages_per_seq, device="cuda").view(b, pages_per_seq).to(torch.int32)
    k_pages = torch.randn(b * pages_per_seq, page_size, hkv, d, device="cuda", dtype=torch.bfloat16)
    v_pages = torch.randn(b * pages_per_seq, page_size, hkv, d_v, device="cuda", dtype=torch.bfloat16)
    return table, k_pages, v_pages, torch.tensor(lens_k, dtype=torch.int32, device="cuda")


def unpaged(pages, table, i, length):
    """Sequence i's first `length` rows of a paged cache, as a batch of one."""
    return pages[table[i].long()].reshape(-1, *pages.shape[2:])[:length][None]


def check_paged_sequences(out, q, cu_q, k_pages, v_pages, table, lens_k, lse=None, **ref_kwargs):
    """Each sequence's rows of out (and lse) against the references over its unpaged keys."""
    for i in range(len(lens_k)):
        rows = slice(int(cu_q[i]), int(cu_q[i + 1]))
        if rows.start == rows.stop:
            continue
        k, v = unpaged(k_pages, table, i, lens_k[i]), unpaged(v_pages, table, i, lens_k[i])
        qi = q[rows][None]
        ref, ref_lse = attention_ref(qi, k, v, compute_dtype=torch.float32, **ref_kwargs)
        low, _ = attention_ref(qi, k, v, compute_dtype=torch.bfloat16, **ref_kwargs)
        assert_tolerance(f"out[{i}]", out[rows][None], ref, low, atol=1e-3)
        if lse is not None:
            assert max_err(lse[:, rows], ref_lse[0]) <= 1e-2


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("dims", DIMS, ids=lambda d: f"d{d[0]}v{d[1]}")
@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("heads", list(HEADS))
@pytest.mark.parametrize("seqlens", SEQLENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_fwd_grid(dtype, dims, mask, heads, seqlens):
    torch.manual_seed(0)
    (d, dv), (hq, hkv), (sq, sk) = dims, HEADS[heads], seqlens
    q = torch.randn(2, sq, hq, d, device="cuda", dtype=dtype)
    k = torch.randn(2, sk, hkv, d, device="cuda", dtype=dtype)
    v = torch.randn(2, sk, hkv, dv, device="cuda", dtype=dtype)
    kw = dict(MASKS[mask])
    if kw.pop("sink", False):
        kw["learnable_sink"] = torch.randn(hq, device="cuda")
    check(q, k, v, kw)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("causal", [False, True])
def test_fwd_varlen(dtype, causal):
    torch.manual_seed(0)
    lens_q, lens_k = [0, 300, 1, 4224, 77, 0], [5, 280, 1000, 4224, 0, 64]
    cu_q, cu_k = make_cu_seqlens(lens_q, "cuda"), make_cu_seqlens(lens_k, "cuda")
    q = torch.randn(sum(lens_q), 8, 128, device="cuda", dtype=dtype)
    k = torch.randn(sum(lens_k), 2, 128, device="cuda", dtype=dtype)
    v = torch.randn(sum(lens_k), 2, 128, device="cuda", dtype=dtype)
    out = run_or_skip_unimplemented(lambda: fa.flash_attn_varlen_func(
        q, k, v, cu_q, cu_k, max(lens_q), max(lens_k), causal=causal), "cuda")
    for b in range(len(lens_q)):
        rows, keys = slice(int(cu_q[b]), int(cu_q[b + 1])), slice(int(cu_k[b]), int(cu_k[b + 1]))
        if lens_q[b] == 0:
            continue
        args = (q[rows][None], k[keys][None], v[keys][None])
        ref, _ = attention_ref(*args, causal=causal, compute_dtype=torch.float32)
        low, _ = attention_ref(*args, causal=causal, compute_dtype=dtype)
        assert_tolerance(f"out[{b}]", out[rows][None], ref, low, atol=1e-3)


# Page sizes of every producer path: whole-tile TMA boxes (multiples of kBlockN), row boxes (the
# largest power of two <= 64 dividing the page and the key block, where a stage takes at most 2:
# 64 rows at kBlockN 128, 32 at d 256) and the gather by cp.async of 16-byte row chunks
# (anything else, powers of two or not), across the swizzle atoms (d 64 / 128 / 256: 128B, d 96:
# 64B), the key blocks (d 192: 96, d 256: 64, whose 32-row passes two warps split) and d != d_v.
@pytest.mark.parametrize("page_size,d,d_v", [(1, 128, 128), (16, 128, 128), (64, 128, 128),
                                             (16, 256, 256),
                                             (256, 128, 128), (48, 128, 128), (100, 128, 128),
                                             (24, 128, 128), (64, 64, 64), (32, 96, 96),
                                             (32, 192, 192), (32, 256, 256), (32, 192, 128),
                                             (1, 64, 64), (7, 96, 96), (3, 256, 256),
                                             (5, 192, 128), (12, 64, 64)])
@pytest.mark.parametrize("causal,softcap", [(True, 0.0), (False, 20.0)])
def test_fwd_paged(page_size, d, d_v, causal, softcap):
    check_paged(page_size, d, d_v, causal, softcap)


# FA4_FWD_PAGED_PATH forces either path where both exist (page_size % 8 == 0, not a multiple of
# kBlockN): boxes where the default rule gathers (more than 2 per stage column), the gather where it
# takes boxes.
@pytest.mark.parametrize("path,page_size,d,d_v", [("boxes", 16, 128, 128), ("boxes", 8, 256, 256),
                                                  ("boxes", 16, 192, 128), ("boxes", 32, 192, 192),
                                                  ("gather", 64, 96, 96), ("gather", 64, 128, 128),
                                                  ("gather", 32, 256, 256)])
def test_fwd_paged_path_override(path, page_size, d, d_v, monkeypatch):
    monkeypatch.setenv("FA4_FWD_PAGED_PATH", path)
    check_paged(page_size, d, d_v, True, 0.0)


def check_paged(page_size, d, d_v, causal, softcap):
    torch.manual_seed(0)
    lens_k = [700, 1, 2000]
    b, sq, hq, hkv = 3, 128, 8, 2
    table, k_pages, v_pages, used_k = paged_cache(lens_k, page_size, hkv, d, d_v)
    q = torch.randn(b * sq, hq, d, device="cuda", dtype=torch.bfloat16)
    cu_q = make_cu_seqlens([sq] * b, "cuda")
    out = run_or_skip_unimplemented(lambda: fa.flash_attn_varlen_func(
        q, k_pages, v_pages, cu_q, None, sq, None, causal=causal, softcap=softcap, seqused_k=used_k,
        page_table=table), "cuda")
    check_paged_sequences(out, q, cu_q, k_pages, v_pages, table, lens_k, causal=causal,
                          softcap=softcap)


# d <= 128 runs a persistent grid (one CTA per SM walking tiles; with a causal / local mask they
# take tiles from a counter, heaviest first); d = 192 too, its O staged in the V stage of each
# tile's last key block (tiles without keys write zeros directly), and d 192 / d_v 128 (each
# warpgroup its own half of that stage; dense test below). Enough tiles here that every CTA takes several, with
# an empty sequence, a keyless one, tiles a window leaves keyless, and ragged ends among them,
# through every paged path (64-row boxes at d <= 128, whole-tile boxes, and the cp.async gather
# for pages 5 and 16 (and 64 at d 192), whose kernels walk from the tile counter at d <= 128 and
# run one tile per CTA at d 192) and the predicated O store.
# At d = 64, max_seqlen_q 2100 selects the three-warpgroup (192-row) tiles without a local mask and
# the two-warpgroup ones with one; 1500 the four-warpgroup ones (256 rows) without a local mask and
# the two-warpgroup ones with one. Sequences whose last tile leaves whole warpgroups without rows
# are among them.
@pytest.mark.parametrize("page_size", [5, 16, 64, 256])
@pytest.mark.parametrize("d", [64, 96, 128, 192])
@pytest.mark.parametrize("mask", [{}, dict(causal=True), dict(window_size=(300, 0))], ids=str)
@pytest.mark.parametrize("longest", [1500, 2100])
def test_fwd_persistent_walk(page_size, d, mask, longest):
    torch.manual_seed(0)
    lens_q, lens_k = [longest, 0, 700, 129, 1024, 300], [longest + 100, 64, 0, 900, 1024, 1]
    hq, hkv, b = 8, 2, len(lens_q)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    assert -(-max(lens_q) // 128) * hq * b >= 2 * sms, "too few tiles to walk"
    table, k_pages, v_pages, used_k = paged_cache(lens_k, page_size, hkv, d, d)
    q = torch.randn(sum(lens_q), hq, d, device="cuda", dtype=torch.bfloat16)
    cu_q = make_cu_seqlens(lens_q, "cuda")
    sink = torch.randn(hq, device="cuda")
    out = fa.flash_attn_varlen_func(q, k_pages, v_pages, cu_q, None, max(lens_q), None,
                                    seqused_k=used_k, page_table=table, learnable_sink=sink, **mask)
    check_paged_sequences(out, q, cu_q, k_pages, v_pages, table, lens_k, learnable_sink=sink,
                          **mask)


# d = 64 with a causal / window mask runs three warpgroups (one tile per CTA) from 8192 query rows;
# 8260 leave two of them without rows in the last tile (they only keep the K / V pipeline moving).
@pytest.mark.parametrize("mask", [{}, dict(causal=True), dict(window_size=(300, 0))], ids=str)
def test_fwd_three_warpgroups_idle(mask):
    torch.manual_seed(0)
    q = torch.randn(1, 8260, 4, 64, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, 700, 2, 64, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(1, 700, 2, 64, device="cuda", dtype=torch.bfloat16)
    check(q, k, v, mask)


# The same walks on dense (batched) inputs: O leaves through the TMA store (each warpgroup's slab
# reused tile after tile) and lse is checked. sq > sk with a causal mask, or the window, leaves
# query blocks keyless: tiles without work between tiles with work in every CTA's walk. At d = 64,
# 1100 rows without a mask end in a 256-row tile with rows for two of its four warpgroups; 2000 rows
# take the 192-row tiles, the last with rows for two of three.
@pytest.mark.parametrize("dims", [(64, 64), (96, 96), (128, 128), (192, 192), (192, 128)],
                         ids=lambda d: f"d{d[0]}v{d[1]}")
@pytest.mark.parametrize("mask", [{}, dict(causal=True), dict(window_size=(300, 0))], ids=str)
@pytest.mark.parametrize("seqlens", [(1100, 700), (640, 1300), (2000, 1900)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_fwd_persistent_walk_dense(dims, mask, seqlens):
    torch.manual_seed(0)
    (d, dv), (sq, sk), hq, hkv, b = dims, seqlens, 8, 2, 8
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    assert -(-sq // 128) * hq * b >= 2 * sms, "too few tiles to walk"
    q = torch.randn(b, sq, hq, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(b, sk, hkv, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(b, sk, hkv, dv, device="cuda", dtype=torch.bfloat16)
    check(q, k, v, mask)


def test_fwd_bitwise_repeatable():
    torch.manual_seed(0)
    q, k, v = (torch.randn(4, 2048, 16, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    first = run_or_skip_unimplemented(lambda: fa.flash_attn_func(q, k, v, causal=True), "cuda")
    for _ in range(10):
        assert torch.equal(fa.flash_attn_func(q, k, v, causal=True), first)


@pytest.mark.serial
def test_fwd_int64_offsets():
    """k and v with more than 2^31 elements: batch 1's keys start past element 2^31."""
    torch.manual_seed(0)
    sk = (2**31 // 128) // 2 + 4096  # per batch; 2 * sk * 128 > 2^31
    k = torch.randn(2, sk, 1, 128, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(2, sk, 1, 128, device="cuda", dtype=torch.bfloat16)
    assert k.numel() > 2**31
    q = torch.randn(2, 64, 1, 128, device="cuda", dtype=torch.bfloat16)
    out = run_or_skip_unimplemented(lambda: fa.flash_attn_func(q, k, v), "cuda")
    ref, _ = attention_ref(q[1:], k[1:], v[1:], compute_dtype=torch.float32)
    low, _ = attention_ref(q[1:], k[1:], v[1:], compute_dtype=torch.bfloat16)
    assert_tolerance("out[1]", out[1:], ref, low, atol=1e-3)


# Packed GQA (pack_gqa=True): the query heads of one K/V head share a tile's rows, row r being
# query position r / G of head r % G of the group, so the masks' diagonals, lse, the sink and the O
# store go per (position, head) instead of per row. Group sizes that do not divide the 128-row
# tile and MQA, query lengths from decoding (1) to several tiles, every head dim.
PACK_HEADS = {"g2": (4, 2), "g3": (6, 2), "g8": (16, 2), "mqa7": (7, 1)}
PACK_SEQLENS = [(1, 1000), (5, 333), (37, 37), (300, 1200), (1000, 999)]


@pytest.mark.parametrize("dims", DIMS, ids=lambda d: f"d{d[0]}v{d[1]}")
@pytest.mark.parametrize("mask", ["none", "causal", "local", "causal_softcap_sink"])
@pytest.mark.parametrize("heads", list(PACK_HEADS))
@pytest.mark.parametrize("seqlens", PACK_SEQLENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_fwd_pack_gqa(dims, mask, heads, seqlens):
    torch.manual_seed(0)
    (d, dv), (hq, hkv), (sq, sk) = dims, PACK_HEADS[heads], seqlens
    check(*inputs(2, sq, sk, hq, hkv, d, dv, mask), pack_gqa=True)


# Packing changes which rows share a tile, not any row's arithmetic: where both forms run the same
# kernel (d 128 and 256 have one tile shape), a row sees the same key blocks in the same order
# (blocks a packed tile adds are fully masked for it: exact zeros), so the results are bitwise
# those of one head per tile; pack_gqa=None (automatic) must agree too.
@pytest.mark.parametrize("d", [128, 256])
@pytest.mark.parametrize("mask", ["none", "causal", "local", "causal_softcap_sink"])
@pytest.mark.parametrize("seqlens", [(1, 700), (20, 300), (1000, 999)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_fwd_pack_gqa_bitwise_unpacked(d, mask, seqlens):
    torch.manual_seed(0)
    (sq, sk), hq, hkv = seqlens, 12, 3
    q, k, v, kw = inputs(3, sq, sk, hq, hkv, d, d, mask)
    outs = [poisoned(q, k, v, pack_gqa=pack, **dict(kw)) for pack in (False, True, None)]
    for out, lse in outs[1:]:
        assert torch.equal(out, outs[0][0])
        assert torch.equal(lse, outs[0][1])


# Decoding-like calls through the user function: one or a few new query positions per sequence
# against a paged cache (whole-tile boxes, 64-row boxes, gathered rows), varlen q with empty
# sequences and seqused_k; automatic packing (pack_gqa=None) takes these.
@pytest.mark.parametrize("page_size", [256, 64, 16, 5])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("lens_q", [[1, 1, 1, 1], [3, 0, 16, 1]], ids=str)
@pytest.mark.parametrize("num_splits", [1, 0, 6])
def test_fwd_pack_gqa_decode_paged(page_size, causal, lens_q, num_splits):
    torch.manual_seed(0)
    lens_k = [700, 5, 2000, 33]
    hq, hkv, d = 32, 4, 128
    table, k_pages, v_pages, used_k = paged_cache(lens_k, page_size, hkv, d, d)
    q = torch.randn(sum(lens_q), hq, d, device="cuda", dtype=torch.bfloat16)
    cu_q = make_cu_seqlens(lens_q, "cuda")
    sink = torch.randn(hq, device="cuda")
    out, lse = fa.flash_attn_varlen_func(q, k_pages, v_pages, cu_q, None, max(lens_q), None,
                                         causal=causal, seqused_k=used_k, page_table=table,
                                         learnable_sink=sink, return_lse=True,
                                         num_splits=num_splits)
    check_paged_sequences(out, q, cu_q, k_pages, v_pages, table, lens_k, lse=lse, causal=causal,
                          learnable_sink=sink)


# Split-KV (num_splits): each tile's key blocks divided among CTAs, their fp32 partial O / lse
# merged by a combine kernel (the sink added there, once). Explicit counts and the automatic
# choice (0: few tiles here, so it splits), splits left without keys (causal / window, a count
# above the key blocks), MHA (split without packing) and GQA (split and packed).
SPLIT_CASES = [(1, 1000, 0), (5, 333, 3), (300, 1200, 7), (1, 70, 16), (40, 2000, 0)]


@pytest.mark.parametrize("dims", DIMS, ids=lambda d: f"d{d[0]}v{d[1]}")
@pytest.mark.parametrize("mask", ["none", "causal", "local", "causal_softcap_sink"])
@pytest.mark.parametrize("heads", [(4, 4), (8, 2)], ids=["mha", "g4"])
@pytest.mark.parametrize("case", SPLIT_CASES, ids=lambda c: f"{c[0]}x{c[1]}s{c[2]}")
def test_fwd_num_splits(dims, mask, heads, case):
    torch.manual_seed(0)
    (d, dv), (hq, hkv), (sq, sk, splits) = dims, heads, case
    q, k, v, kw = inputs(2, sq, sk, hq, hkv, d, dv, mask)
    out = check(q, k, v, kw, num_splits=splits)
    again, _ = poisoned(q, k, v, num_splits=splits, **dict(kw))
    assert torch.equal(out, again)  # the combine's order is fixed
