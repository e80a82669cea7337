"""The op layer: opcheck (schema, fake kernels, autograd registration), gradcheck, torch.compile,
the shared exp2 polynomial, and build info."""

import math

import pytest
import torch

import flash_attn4 as fa
from helpers import DEVICES, make_cu_seqlens, randn, run_or_skip_unimplemented

D = 64  # a head dim every kernel builds


def fwd_samples(device, dtype):
    q, k, v = randn(2, 9, 4, D, dtype=dtype, device=device), randn(2, 13, 2, D, dtype=dtype, device=device), \
        randn(2, 13, 2, D, dtype=dtype, device=device)
    sink = randn(4, device=device)
    yield (q, k, v), dict(causal=True)
    yield (q, k, v), dict(window_size_left=3, window_size_right=2, softcap=1.0, learnable_sink=sink)
    cu_q, cu_k = make_cu_seqlens([3, 0, 6], device), make_cu_seqlens([5, 2, 6], device)
    yield (randn(9, 4, D, dtype=dtype, device=device), randn(13, 2, D, dtype=dtype, device=device),
           randn(13, 2, D, dtype=dtype, device=device)), \
        dict(cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=6, max_seqlen_k=6, causal=True)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_fwd(device):
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    for args, kwargs in fwd_samples(device, dtype):
        # Gradients flow to q, k, v (and the sink) through the registered autograd.
        args = tuple(a.requires_grad_() for a in args)
        run_or_skip_unimplemented(lambda: torch.library.opcheck(torch.ops.fa4.fwd.default, args, kwargs), device)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_fwd_out(device):
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    q, k, v = randn(2, 9, 4, D, dtype=dtype, device=device), randn(2, 13, 2, D, dtype=dtype, device=device), \
        randn(2, 13, 2, D, dtype=dtype, device=device)
    out = torch.empty(2, 9, 4, D, dtype=dtype, device=device)
    lse = torch.empty(2, 4, 9, device=device)
    torch.library.opcheck(torch.ops.fa4.fwd.out, (q, k, v), dict(causal=True, out=out, lse=lse))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_bwd(device):
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    for args, kwargs in fwd_samples(device, dtype):
        out, lse = run_or_skip_unimplemented(lambda: torch.ops.fa4.fwd(*args, **kwargs), device)
        run_or_skip_unimplemented(lambda: torch.library.opcheck(
            torch.ops.fa4.bwd.default, (torch.randn_like(out), *args, out, lse), kwargs), device)


@pytest.mark.parametrize("kwargs", [dict(causal=True), dict(window_size=(2, 1), softcap=1.3), dict()],
                         ids=["causal", "local_softcap", "plain"])
def test_gradcheck_float64(kwargs):
    torch.manual_seed(0)
    q = randn(1, 5, 2, 8, dtype=torch.float64, requires_grad=True)
    k = randn(1, 7, 1, 8, dtype=torch.float64, requires_grad=True)
    v = randn(1, 7, 1, 8, dtype=torch.float64, requires_grad=True)
    # The sink is float32 by contract, too coarse for finite differences: it joins as a constant
    # here, and dsink is checked against the reference's autograd in test_attention.py.
    sink = randn(2)

    def fn(q, k, v):
        return fa.flash_attn_func(q, k, v, learnable_sink=sink, **kwargs)

    # lse is float32 by contract, too coarse for finite differences: its gradient (dlse) is checked
    # against the reference in test_attention.py::test_bwd_through_lse. The backward recomputes P
    # from that float32 lse, hence atol 1e-4.
    assert torch.autograd.gradcheck(fn, (q, k, v), eps=1e-6, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("device", DEVICES)
def test_eager_autograd_matches_registered_formula(device):
    """The user functions' eager autograd (ops.AttentionFunction) and the op's registered formula
    share _setup_context / _backward: same outputs, same gradients (through out and lse), bitwise."""
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    for args, kwargs in fwd_samples(device, dtype):
        results = []
        for eager in (True, False):
            leaves = [a.detach().clone().requires_grad_() for a in args]
            sink = kwargs.get("learnable_sink")
            sink = sink.detach().clone().requires_grad_() if sink is not None else None
            # deterministic: the CUDA backward's dQ reduction order is otherwise free to differ.
            kw = dict(kwargs, learnable_sink=sink, deterministic=True)
            if eager:
                if "cu_seqlens_q" in kw:
                    out, lse = run_or_skip_unimplemented(lambda: fa.flash_attn_varlen_func(
                        *leaves, kw.pop("cu_seqlens_q"), kw.pop("cu_seqlens_k"), kw.pop("max_seqlen_q"),
                        kw.pop("max_seqlen_k"), return_lse=True, **kw), device)
                else:
                    window = (kw.pop("window_size_left", -1), kw.pop("window_size_right", -1))
                    out, lse = run_or_skip_unimplemented(lambda: fa.flash_attn_func(
                        *leaves, window_size=window, return_lse=True, **kw), device)
                assert type(out.grad_fn).__name__ == "AttentionFunctionBackward"
            else:
                out, lse = run_or_skip_unimplemented(lambda: torch.ops.fa4.fwd(*leaves, **kw), device)
            gen = torch.Generator(device=device).manual_seed(1)
            dout = torch.randn(out.shape, generator=gen, device=device, dtype=out.dtype)
            dlse = torch.randn(lse.shape, generator=gen, device=device, dtype=lse.dtype)
            inputs = [*leaves] + ([sink] if sink is not None else [])
            grads = torch.autograd.grad((out, lse), inputs, (dout, dlse))
            results.append((out, lse, *grads))
        for a, b in zip(*results):
            assert torch.equal(a, b)


class TinyAttention(torch.nn.Module):
    def __init__(self, dim=256, heads=4):
        super().__init__()
        self.heads = heads
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, x):
        b, s, _ = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, -1).unbind(2)
        return self.proj(fa.flash_attn_func(q, k, v, causal=True).reshape(b, s, -1))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_fullgraph(device, dynamic):
    torch._dynamo.reset()
    torch.manual_seed(0)
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    model = TinyAttention().to(device, dtype)
    compiled = torch.compile(model, fullgraph=True, dynamic=dynamic)
    x = torch.randn(2, 24, 256, device=device, dtype=dtype, requires_grad=True)
    want = model(x)
    (want_grad,) = run_or_skip_unimplemented(lambda: torch.autograd.grad(want.sum(), x), device)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for attempt in range(2):  # the second call must not recompile
            got = compiled(x)
            (got_grad,) = torch.autograd.grad(got.sum(), x)
            torch.testing.assert_close(got, want, atol=1e-4 if dtype == torch.float32 else 2e-2, rtol=1e-3)
            torch.testing.assert_close(got_grad, want_grad, atol=1e-4 if dtype == torch.float32 else 5e-2, rtol=1e-3)
    if dynamic:
        y = torch.randn(3, 40, 256, device=device, dtype=dtype)
        torch.testing.assert_close(compiled(y), model(y), atol=1e-4 if dtype == torch.float32 else 2e-2, rtol=1e-3)


def test_exp2_poly_relative_error():
    """The shared software exp2 (csrc/common/exp2.h) against exp2 over its whole argument range."""
    x = torch.linspace(-126.0, 127.0, 2_000_001, dtype=torch.float32)
    x = torch.cat([x, torch.rand(1_000_000) * 2 - 1, -torch.rand(1_000_000) * 20])  # dense where attention lives
    got = torch.ops.fa4.exp2_poly(x).double()
    want = torch.exp2(x.double())
    rel = ((got - want) / want).abs().max().item()
    assert rel <= 2e-4, f"max relative error {rel:.3e}"
    assert rel > 1e-6  # it is a polynomial, not a call to exp2
    edge = torch.tensor([float("-inf"), -127.0, -126.5, 0.0, 8.0])
    assert torch.ops.fa4.exp2_poly(edge).tolist()[:3] == [0.0, 0.0, 0.0]
    assert torch.ops.fa4.exp2_poly(edge)[3].item() == 1.0
    assert math.isclose(torch.ops.fa4.exp2_poly(edge)[4].item(), 256.0, rel_tol=2e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_exp2_poly_device_build_matches_host_build():
    """The kernels' exp2_poly (device build, no FRND/F2I) is the host's function, bit for bit."""
    x = torch.linspace(-130.0, 127.0, 4_000_001, dtype=torch.float32)
    x = torch.cat([x, torch.rand(2_000_000) * 2 - 1, -torch.rand(2_000_000) * 30,
                   torch.tensor([float("-inf"), -126.0, -126.00001, 127.0, -0.0, 1e-30, -1e-30])])
    host = torch.ops.fa4.exp2_poly(x)
    device = torch.ops.fa4.exp2_poly(x.cuda()).cpu()
    mismatch = (host.view(torch.int32) != device.view(torch.int32)).nonzero()
    assert mismatch.numel() == 0, f"{mismatch.numel()} mismatches, first at x={x[mismatch[0]].item()!r}"


def test_build_info():
    info = fa.build_info()
    assert info["version"] == fa.__version__
    assert set(info) >= {"cuda", "cuda_archs", "cutlass", "cuda_kernels", "cpu_kernels"}
    assert info["cpu_kernels"] == ["fwd", "bwd"]
    if info["cuda"]:
        assert info["cutlass"], "a CUDA build must report the CUTLASS it was built with"
