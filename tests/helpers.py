"""Shared test helpers: devices, random inputs, the low-precision tolerance rule, varlen packing."""

from __future__ import annotations

import pytest
import torch

from flash_attn4.reference import attention_ref

CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="no CUDA device"))]


def randn(*shape, dtype=torch.float32, device="cpu", requires_grad=False):
    t = torch.randn(*shape, dtype=dtype, device=device)
    return t.requires_grad_(requires_grad)


def max_err(a, b):
    return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0


def assert_tolerance(name, out, ref64, same_dtype, atol=1e-5):
    """The project's tolerance rule: |out - ref| <= 2 * |same-dtype torch - ref| + atol (max norm),
    ref computed in float64; same_dtype is PyTorch's computation of the same thing in out's dtype."""
    assert not torch.isnan(out).any(), f"{name}: NaN in output"
    err = max_err(out, ref64)
    bound = 2 * max_err(same_dtype, ref64) + atol
    assert err <= bound, f"{name}: max error {err:.3e} exceeds 2 x same-dtype error + atol = {bound:.3e}"


NOT_IMPLEMENTED = "fa4: not implemented: "


def run_or_skip_unimplemented(fn, device):
    """On CUDA, a configuration the kernels do not cover raises NotImplementedError (RuntimeError
    with the same marker when the op is called directly or from autograd): the test is reported as
    skipped with that reason, never passed. On CPU everything must run."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - opcheck wraps the op's error in its own type
        if device == "cpu" or NOT_IMPLEMENTED not in str(e):
            raise
        reason = str(e)[str(e).index(NOT_IMPLEMENTED):].splitlines()[0]
        pytest.skip(f"not implemented on CUDA: {reason}")


def ref_and_same_dtype(q, k, v, **kw):
    """float64 reference and the same computation in q's dtype (float32 for fp32/fp64 inputs)."""
    ref = attention_ref(q, k, v, **kw)
    same_dtype = q.dtype if q.dtype in (torch.float16, torch.bfloat16) else torch.float32
    low = attention_ref(q, k, v, compute_dtype=same_dtype, **kw)
    return ref, low


def make_cu_seqlens(lengths, device):
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + n)
    return torch.tensor(cu, dtype=torch.int32, device=device)
