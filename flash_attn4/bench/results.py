"""Result records of a run and the ratios derived from them. Standard library only."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .config import CUDNN, OUR_VARIANTS, OURS, Cell

OK, SKIPPED, FAILED = "ok", "skipped", "failed"


@dataclass
class ProviderResult:
    """One provider on one cell. `skipped` is by design (e.g. flex off d=128); `failed` is an
    error the provider raised (unsupported shape, OOM, compile error), with its reason."""

    status: str
    ms: float | None = None
    tflops: float | None = None
    peak_mem_mib: float | None = None  # max_memory_allocated delta over one fwd (+ bwd) call
    reason: str | None = None
    # Over the timed repetitions (gpu_state.Sampler; None without NVML): mean SM clock, mean board
    # power, share of samples held by the software power cap.
    sm_clock_mhz: float | None = None
    power_w: float | None = None
    power_capped: float | None = None


@dataclass
class Check:
    """fa4's rel L2 errors against a float32 SDPA reference, per tensor (out, and dq/dk/dv)."""

    reference: str
    rel_l2: dict[str, float]
    limit: float

    @property
    def ok(self) -> bool:
        return all(err <= self.limit for err in self.rel_l2.values())

    def describe(self) -> str:
        errs = ", ".join(f"{name}={err:.2e}" for name, err in self.rel_l2.items())
        return f"rel L2 {errs} > {self.limit:.0e}"


@dataclass
class CellResult:
    cell: Cell
    results: dict[str, ProviderResult] = field(default_factory=dict)
    check: Check | None = None

    def tflops_of(self, provider: str) -> float | None:
        result = self.results.get(provider)
        return result.tflops if result is not None and result.status == OK else None

    def best_peer(self) -> str | None:
        peers = {p: self.tflops_of(p) for p in self.results if p != OURS and p not in OUR_VARIANTS}
        peers = {p: t for p, t in peers.items() if t is not None}
        return max(peers, key=peers.__getitem__) if peers else None

    def ratio_to(self, peer: str | None) -> float | None:
        ours = self.tflops_of(OURS)
        theirs = self.tflops_of(peer) if peer is not None else None
        return ours / theirs if ours is not None and theirs else None

    def to_json(self) -> dict:
        best = self.best_peer()
        return {
            **asdict(self.cell),
            "batch": self.cell.batch,
            "heads": self.cell.heads,
            "kv_heads": self.cell.kv_heads,
            "seqlen_q": self.cell.seqlen_q,
            "flops": self.cell.flops,
            "results": {p: asdict(r) for p, r in self.results.items()},
            "fa4_check": None if self.check is None else {**asdict(self.check), "ok": self.check.ok},
            "best_peer": best,
            "ratio_fa4_to_best_peer": self.ratio_to(best),
            "ratio_fa4_to_cudnn": self.ratio_to(CUDNN),
        }


def cell_from_json(data: dict) -> CellResult:
    """Inverse of CellResult.to_json (derived fields are recomputed)."""
    cell = Cell(data["mode"], data["causal"], data["head_dim"], data["seqlen"],
                data.get("kv_heads_override"), data.get("batch_override"),
                data.get("seqlen_q_override"))
    results = {p: ProviderResult(**r) for p, r in data["results"].items()}
    check = data.get("fa4_check")
    return CellResult(cell, results, None if check is None else
                      Check(check["reference"], check["rel_l2"], check["limit"]))
