"""flash_attn4: FlashAttention-4-class exact attention for PyTorch.

    from flash_attn4 import flash_attn_func
    out = flash_attn_func(q, k, v, causal=True)   # q, k, v: (batch, seqlen, heads, head_dim)
"""

import json

import torch

try:
    from . import _C  # noqa: F401  (registers the fa4 ops)
except ImportError as e:  # pragma: no cover - only without a build
    raise ImportError(
        "flash_attn4._C is not built. Build it with `make build` (or `python setup.py build_ext "
        f"--inplace`, or `pip install --no-build-isolation .`). Original error: {e}"
    ) from e

from . import ops  # noqa: F401,E402  (fake kernels and autograd for the fa4 ops)
from .interface import flash_attn_func, flash_attn_qkvpacked_func, flash_attn_varlen_func  # noqa: E402

__version__ = "0.1.0"


def build_info() -> dict:
    """What this binary holds: CUDA version and archs it was built for, CUTLASS version, kernels."""
    info = json.loads(torch.ops.fa4.build_info())
    info["version"] = __version__
    return info


__all__ = ["flash_attn_func", "flash_attn_varlen_func", "flash_attn_qkvpacked_func", "build_info", "__version__"]
