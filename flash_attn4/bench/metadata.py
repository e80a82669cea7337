"""What a result file records about the machine and software, so runs can be compared later."""

from __future__ import annotations

import os
import shlex
import sys
from datetime import datetime

import torch

import flash_attn4

from .gpu_state import board_limits


def _cudnn_version() -> str | None:
    version = torch.backends.cudnn.version()  # e.g. 91900 for 9.19.0 (8.x used 8xyz)
    if version is None:
        return None
    if version >= 90000:
        return f"{version // 10000}.{version % 10000 // 100}.{version % 100}"
    return f"{version // 1000}.{version % 1000 // 100}.{version % 100}"


def _triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


# Environment variables that change what fa4 runs (not its results beyond summation order).
FA4_ENV = ("FA4_BWD_HEAD_SPLITS", "FA4_BWD_SERIAL_MAIN", "FA4_BWD_SERIAL_CONVERT",
           "FA4_BWD_ZERO_DQ_ACCUM", "FA4_FWD_PAGED_PATH")


def command_line() -> str:
    """The command as typed (python -m flash_attn4.bench ...), with the FA4_ENV variables set,
    not the path of __main__.py."""
    env = [f"{k}={shlex.quote(os.environ[k])}" for k in FA4_ENV if os.environ.get(k)]
    return " ".join(env + ["python -m flash_attn4.bench"] + [shlex.quote(a) for a in sys.argv[1:]])


def collect(now: datetime) -> dict:
    device = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(device)
    build_info = getattr(flash_attn4, "build_info", None)
    return {
        "gpu": torch.cuda.get_device_name(device),
        "gpu_capability": f"sm{props.major}{props.minor}",
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": _cudnn_version(),
        "triton": _triton_version(),
        "python": sys.version.split()[0],
        "flash_attn4": getattr(flash_attn4, "__version__", "unknown"),
        "build_info": build_info() if callable(build_info) else None,
        **board_limits(device),
        "date": now.isoformat(timespec="seconds"),
        "command": command_line(),
    }
