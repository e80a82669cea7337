"""Every invalid call raises a Python exception naming the argument, the expectation and the value."""

import pytest
import torch

import flash_attn4 as fa
from helpers import make_cu_seqlens, randn

Q = lambda *s, **kw: randn(*s, **kw)  # noqa: E731


def fwd(q, k, v, **kw):
    return fa.flash_attn_func(q, k, v, **kw)


def varlen(lens_q=(3, 5), lens_k=(4, 6), d=32, **kw):
    q = randn(sum(lens_q), 4, d)
    k = randn(sum(lens_k), 2, d)
    v = randn(sum(lens_k), 2, d)
    args = dict(cu_seqlens_q=make_cu_seqlens(lens_q, "cpu"), cu_seqlens_k=make_cu_seqlens(lens_k, "cpu"),
                max_seqlen_q=max(lens_q), max_seqlen_k=max(lens_k))
    args.update(kw)
    return fa.flash_attn_varlen_func(q, k, v, **args)


def batched(b=2, sq=8, sk=8, hq=4, hkv=2, d=32, dv=32, dtype=torch.float32):
    return randn(b, sq, hq, d, dtype=dtype), randn(b, sk, hkv, d, dtype=dtype), randn(b, sk, hkv, dv, dtype=dtype)


def raises(match):
    return pytest.raises(RuntimeError, match=match)


def test_integer_dtype():
    q, k, v = batched()
    with raises(r"q must have dtype float16 or bfloat16.*got int32"):
        fwd(q.int(), k.int(), v.int())


def test_mixed_dtypes():
    q, k, v = batched()
    with raises(r"k must have dtype float32, got bfloat16"):
        fwd(q, k.bfloat16(), v)
    with raises(r"v must have dtype float32, got float16"):
        fwd(q, k, v.half())


def test_devices_differ():
    q, k, v = batched()
    with raises(r"k must be on the same device as q \(cpu\), got meta"):
        fwd(q, k.to("meta"), v)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_devices_differ_cuda():
    q, k, v = batched(dtype=torch.bfloat16)
    with raises(r"v must be on the same device as q \(cuda:0\), got cpu"):
        fwd(q.cuda(), k.cuda(), v)


def test_last_dim_not_contiguous():
    q, k, v = batched()
    q_strided = torch.randn(2, 8, 4, 64)[..., ::2]
    with raises(r"q must have a contiguous last dimension \(stride 1\), got stride 2"):
        fwd(q_strided, k, v)


@pytest.mark.parametrize("d", [7, 12, 264])
def test_bad_head_dim(d):
    q, k, v = batched(d=d)
    with raises(rf"q.shape\[-1\] \(head_dim\) must be a multiple of 8 in \[8, 256\], got {d}"):
        fwd(q, k, v)


def test_head_dim_mismatch():
    q, _, v = batched()
    k = randn(2, 8, 2, 64)
    with raises(r"k.shape\[3\] \(head_dim, as in q\) must be 32, got 64"):
        fwd(q, k, v)


def test_heads_not_divisible():
    q, k, v = batched(hq=5, hkv=2)
    with raises(r"q's heads \(5\) must be a multiple of k's heads \(2\)"):
        fwd(q, k, v)


def test_batch_mismatch():
    q, k, v = batched()
    with raises(r"k.shape\[0\] \(batch, as in q\) must be 2, got 3"):
        fwd(q, randn(3, 8, 2, 32), randn(3, 8, 2, 32))


def test_kv_heads_mismatch():
    q, k, _ = batched()
    with raises(r"v.shape\[2\] \(heads_kv, as in k\) must be 2, got 1"):
        fwd(q, k, randn(2, 8, 1, 32))


def test_wrong_rank():
    q, k, v = batched()
    with raises(r"q must be 4-D \(batch, seqlen_q, heads, head_dim\), got shape \(8, 4, 32\)"):
        fwd(q[0], k, v)


def test_cu_seqlens_dtype():
    with raises(r"cu_seqlens_q must have dtype int32, got int64"):
        varlen(cu_seqlens_q=torch.tensor([0, 3, 8]))


def test_cu_seqlens_length():
    with raises(r"cu_seqlens_k must have 3 entries \(batch \+ 1, batch from q\), got 2"):
        varlen(cu_seqlens_k=torch.tensor([0, 10], dtype=torch.int32))


def test_cu_seqlens_device():
    with raises(r"cu_seqlens_q must be on the same device as q \(cpu\), got meta"):
        varlen(cu_seqlens_q=torch.empty(3, dtype=torch.int32, device="meta"))


def test_cu_seqlens_decreasing():
    with raises(r"cu_seqlens_q must be non-decreasing, got cu_seqlens_q\[1\] = 5 > cu_seqlens_q\[2\] = 3"):
        varlen(cu_seqlens_q=torch.tensor([0, 5, 3], dtype=torch.int32))


def test_cu_seqlens_past_total():
    with raises(r"cu_seqlens_k\[-1\] must be <= k.shape\[0\] \(10\), got 12"):
        varlen(cu_seqlens_k=torch.tensor([0, 4, 12], dtype=torch.int32), max_seqlen_k=8)


def test_max_seqlen_too_small():
    with raises(r"max_seqlen_q \(4\) must be >= every sequence length, but sequence 1 has length 5"):
        varlen(max_seqlen_q=4)


def test_max_seqlen_missing():
    with raises(r"max_seqlen_k must be given with cu_seqlens_k, got None"):
        varlen(max_seqlen_k=None)


def test_seqused_out_of_range():
    with raises(r"seqused_k\[1\] must be in \[0, 6\] \(its cu_seqlens length\), got 9"):
        varlen(seqused_k=torch.tensor([4, 9], dtype=torch.int32))


def test_page_table_out_of_range():
    q = randn(4, 2, 32)
    pages = randn(3, 4, 2, 32)
    table = torch.tensor([[0, 3]], dtype=torch.int32)
    with raises(r"page_table\[0, 1\] must be a page index in \[0, 3\) \(k.shape\[0\]\), got 3"), torch.no_grad():
        fa.flash_attn_varlen_func(q, pages, pages, torch.tensor([0, 4], dtype=torch.int32), None, 4, None,
                                  page_table=table)


def test_page_table_dtype():
    q = randn(4, 2, 32)
    pages = randn(3, 4, 2, 32)
    with raises(r"page_table must have dtype int32, got int64"), torch.no_grad():
        fa.flash_attn_varlen_func(q, pages, pages, torch.tensor([0, 4], dtype=torch.int32), None, 4, None,
                                  page_table=torch.tensor([[0, 1]]))


@pytest.mark.parametrize("window", [(-2, 0), (0, -5)])
def test_window_below_minus_one(window):
    q, k, v = batched()
    side = "left" if window[0] < -1 else "right"
    with raises(rf"window_size\[{0 if side == 'left' else 1}\] \({side}\) must be >= -1"):
        fwd(q, k, v, window_size=window)


def test_window_not_a_pair():
    q, k, v = batched()
    with pytest.raises(ValueError, match=r"window_size must be a pair \(left, right\), got 3"):
        fwd(q, k, v, window_size=3)


def test_negative_softcap():
    q, k, v = batched()
    with raises(r"softcap must be >= 0 \(0: off\), got -1"):
        fwd(q, k, v, softcap=-1.0)


def test_nonfinite_scale():
    q, k, v = batched()
    with raises(r"softmax_scale must be finite, got inf"):
        fwd(q, k, v, softmax_scale=float("inf"))


def test_sink_shape_and_dtype():
    q, k, v = batched()
    with raises(r"learnable_sink.shape\[0\] \(heads of q\) must be 4, got 3"):
        fwd(q, k, v, learnable_sink=torch.zeros(3))
    with raises(r"learnable_sink must have dtype float32, got bfloat16"):
        fwd(q, k, v, learnable_sink=torch.zeros(4, dtype=torch.bfloat16))


def test_out_buffer_mismatch():
    q, k, v = batched()
    with raises(r"out.shape\[2\] \(as q, with head_dim_v\) must be 4, got 2"), torch.no_grad():
        fwd(q, k, v, out=torch.empty(2, 8, 2, 32))
    with raises(r"out must have dtype float32, got float16"), torch.no_grad():
        fwd(q, k, v, out=torch.empty(2, 8, 4, 32, dtype=torch.half))


def test_out_buffer_with_grad():
    q, k, v = batched()
    q.requires_grad_()
    with pytest.raises(ValueError, match="out= .* has no backward"):
        fwd(q, k, v, out=torch.empty(2, 8, 4, 32))


def bwd_args():
    q, k, v = batched()
    out, lse = torch.ops.fa4.fwd(q, k, v)
    return torch.randn_like(out), q, k, v, out, lse


def test_bwd_dout_mismatch():
    dout, q, k, v, out, lse = bwd_args()
    with raises(r"dout.shape\[1\] \(as out\) must be 8, got 7"):
        torch.ops.fa4.bwd(dout[:, :7], q, k, v, out, lse)
    with raises(r"dout must have dtype float32, got bfloat16"):
        torch.ops.fa4.bwd(dout.bfloat16(), q, k, v, out, lse)


def test_bwd_lse_mismatch():
    dout, q, k, v, out, lse = bwd_args()
    with raises(r"lse.shape\[1\] \(as q\) must be 4, got 3"):
        torch.ops.fa4.bwd(dout, q, k, v, out, lse[:, :3])
    with raises(r"lse must have dtype float32, got float64"):
        torch.ops.fa4.bwd(dout, q, k, v, out, lse.double())


def test_bwd_out_heads_mismatch():
    dout, q, k, v, out, lse = bwd_args()
    with raises(r"out.shape\[2\] \(as q, with head_dim_v\) must be 4, got 2"):
        torch.ops.fa4.bwd(dout[:, :, :2], q, k, v, out[:, :, :2], lse)


def test_fp8_descale_not_implemented():
    q, k, v = batched()
    with pytest.raises(NotImplementedError, match="fp8 descale"):
        fa.interface._call(torch.ops.fa4.fwd, q, k, v, q_descale=torch.ones(1))


def test_negative_num_splits():
    q, k, v = batched()
    with raises(r"num_splits must be >= 0 \(0: automatic\), got -1"):
        fwd(q, k, v, num_splits=-1)


def test_qkvpacked_shape():
    with pytest.raises(ValueError, match=r"qkv must have shape \(batch, seqlen, 3, heads, head_dim\), got \(2, 8, 2, 4, 32\)"):
        fa.flash_attn_qkvpacked_func(randn(2, 8, 2, 4, 32))


# The CUDA kernels' A/B knobs: a value they would not recognise raises (on every device) instead of
# being ignored; the values they take pass.
@pytest.mark.parametrize("name,value", [("FA4_FWD_PAGED_PATH", "gathr"), ("FA4_FWD_PAGED_PATH", "1"),
                                        ("FA4_BWD_HEAD_SPLITS", "0"), ("FA4_BWD_HEAD_SPLITS", "two"),
                                        ("FA4_BWD_HEAD_SPLITS", "-3"), ("FA4_BWD_SERIAL_MAIN", "yes"),
                                        ("FA4_BWD_SERIAL_CONVERT", "2"), ("FA4_BWD_ZERO_DQ_ACCUM", "true")])
def test_env_knob_bad_value(name, value, monkeypatch):
    monkeypatch.setenv(name, value)
    q, k, v = batched()
    with raises(rf"environment variable {name} must be .*got '{value}'"):
        fwd(q, k, v)


@pytest.mark.parametrize("name,value", [("FA4_FWD_PAGED_PATH", "gather"), ("FA4_FWD_PAGED_PATH", "boxes"),
                                        ("FA4_FWD_PAGED_PATH", ""), ("FA4_BWD_HEAD_SPLITS", "4"),
                                        ("FA4_BWD_SERIAL_MAIN", "1"), ("FA4_BWD_ZERO_DQ_ACCUM", "0")])
def test_env_knob_good_value(name, value, monkeypatch):
    monkeypatch.setenv(name, value)
    q, k, v = (t.requires_grad_() for t in batched())
    fwd(q, k, v).sum().backward()
    assert torch.isfinite(q.grad).all()
