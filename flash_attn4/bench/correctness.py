"""fa4's numerical check: rel L2 errors against a higher-precision reference, so a fast but wrong
kernel cannot go unnoticed in a benchmark run."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from .providers import expand_kv
from .results import Check

# Far above a correct kernel (bf16 ~2e-3 on out and ~5e-3 on grads, fp16 about 8x less, fp32
# ~1e-6) and far below a broken one (~1). A sanity bound, not the test suite's tolerance rule.
REL_L2_LIMIT = {torch.bfloat16: 2e-2, torch.float16: 5e-3, torch.float32: 1e-4}

GPU_REFERENCE = "SDPA in float32 (mem-efficient backend, math fallback)"


def rel_l2(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected||, in float64."""
    expected = expected.double()
    return ((actual.double() - expected).norm() / expected.norm().clamp_min(1e-30)).item()


def gpu_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                  dout: torch.Tensor | None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """out (b, s, h, d) and, given dout, (dq, dk, dv), all float32. The mem-efficient backend keeps
    memory O(seqlen), so this runs on every cell of the grid (the math backend would need the
    whole score matrix: 32 GiB at s=16384, d=64). SDPA's top-left causal mask equals fa4's
    bottom-right one here because seqlen_q == seqlen_k (cells with another query length are
    non-causal)."""
    leaves = [t.detach().float().requires_grad_(dout is not None) for t in (q, k, v)]
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        out = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in expand_kv(*leaves)),
                                             is_causal=causal).transpose(1, 2)
        grads = () if dout is None else torch.autograd.grad(out, leaves, dout.float())
    return out.detach(), grads


def check(out: torch.Tensor, grads: tuple[torch.Tensor, ...], ref_out: torch.Tensor,
          ref_grads: tuple[torch.Tensor, ...], reference: str) -> Check:
    errors = {"out": rel_l2(out, ref_out)}
    errors.update({name: rel_l2(g, r) for name, g, r in zip(("dq", "dk", "dv"), grads, ref_grads)})
    return Check(reference, errors, REL_L2_LIMIT[out.dtype])
