"""SM clock and board power while a measurement runs, sampled through NVML (pynvml) when it is
installed.

Why it is recorded: on the H200s we measure on, every cell longer than a few tens of milliseconds
runs at the board's power limit (~700 W, NVML's software power cap active), and the SM clock then
settles well below its maximum, at a value that depends on the kernel: 1450-1515 MHz for an
8192^3 bf16 matrix product, 1600-1770 MHz for attention, 1980 MHz idle (bench/probe_clock.py,
2026-11-24). A TFLOP/s number means more next to the clock it was measured at. Standard library
only except for the optional pynvml / torch lookups in `Sampler`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

# nvmlClocksEventReasonSwPowerCap: the driver holds the clock down to stay under the power limit.
SW_POWER_CAP = 0x4


@dataclass(frozen=True)
class GpuState:
    sm_clock_mhz: float  # mean SM clock over the samples
    power_w: float       # mean board power (NVML's own averaging window applies)
    power_capped: float  # share of samples with the software power cap active, 0..1
    samples: int

    def result_fields(self) -> dict:
        """The ProviderResult fields, rounded for the JSON."""
        return {"sm_clock_mhz": round(self.sm_clock_mhz, 1), "power_w": round(self.power_w, 1),
                "power_capped": round(self.power_capped, 3)}


def summarize(samples: list[tuple[float, float, int]]) -> GpuState | None:
    """(SM clock MHz, power W, clocks-event reason bits) per sample -> their means and the share
    of samples held by the power cap; None without samples."""
    if not samples:
        return None
    n = len(samples)
    return GpuState(sm_clock_mhz=sum(s[0] for s in samples) / n,
                    power_w=sum(s[1] for s in samples) / n,
                    power_capped=sum(1 for s in samples if s[2] & SW_POWER_CAP) / n,
                    samples=n)


def _nvml_handle(device_index: int):
    """The NVML handle of a torch CUDA device (honours CUDA_VISIBLE_DEVICES), or None."""
    try:
        import pynvml
        import torch

        get = getattr(torch.cuda, "_get_pynvml_handler", None)
        if get is not None:
            return get(device_index)
        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetHandleByIndex(device_index)
    except Exception:  # no pynvml, no driver access: the run goes on without clock records
        return None


def _read(handle) -> tuple[float, float, int]:
    import pynvml

    clock = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)
    power_mw = pynvml.nvmlDeviceGetPowerUsage(handle)
    reasons_of = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
        pynvml.nvmlDeviceGetCurrentClocksThrottleReasons
    return float(clock), power_mw / 1000.0, int(reasons_of(handle))


def board_limits(device_index: int) -> dict:
    """The enforced power limit and the maximum SM clock, for the run's metadata ({} if NVML is
    not reachable)."""
    handle = _nvml_handle(device_index)
    if handle is None:
        return {}
    try:
        import pynvml

        return {"power_limit_w": pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0,
                "max_sm_clock_mhz": pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)}
    except Exception:
        return {}


class Sampler:
    """`with Sampler(device) as s: ...` samples on a background thread every `period_s`; after the
    block, `s.state` is the GpuState of the samples (None where NVML is not available)."""

    def __init__(self, device_index: int, period_s: float = 0.02):
        self._handle = _nvml_handle(device_index)
        self._period_s = period_s
        self._samples: list[tuple[float, float, int]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state: GpuState | None = None

    def _loop(self) -> None:
        while True:
            try:
                self._samples.append(_read(self._handle))
            except Exception:
                return
            if self._stop.wait(self._period_s):
                return

    def __enter__(self) -> "Sampler":
        if self._handle is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        self.state = summarize(self._samples)
