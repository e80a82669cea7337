"""Benchmark grid and FLOP counts (FlashAttention-paper conventions, see bench/README.md).

Standard library only, so it imports without a GPU or the compiled extension.
"""

from __future__ import annotations

from dataclasses import dataclass

# Token and width budgets of the papers' grid: batch * seqlen and heads * head_dim stay constant,
# so every cell moves the same number of elements and only the attention shape changes.
TOKENS = 16384
MODEL_DIM = 2048
BWD_FLOPS_FACTOR = 2.5  # backward runs 5 matmuls (QKᵀ recomputed, dV, dP, dQ, dK), forward 2

# Column order of the tables (the ANCHORS.md order), and their labels.
PROVIDERS: tuple[str, ...] = ("fa4", "fa4_det", "fa4_nopack", "fa4_paged", "sdpa_cudnn", "sdpa_flash",
                              "flex", "sdpa_efficient")
LABELS: dict[str, str] = {
    "fa4": "fa4",
    "fa4_det": "fa4(deterministic)",
    "fa4_nopack": "fa4(pack_gqa=False)",
    "fa4_paged": "fa4(paged KV)",
    "sdpa_cudnn": "sdpa_cudnn",
    "sdpa_flash": "sdpa_flash(FA2)",
    "flex": "flex(triton)",
    "sdpa_efficient": "sdpa_efficient",
}
OURS = "fa4"
# Our own variants: shown next to OURS, never counted as a peer.
OUR_VARIANTS: tuple[str, ...] = ("fa4_det", "fa4_nopack", "fa4_paged")
# What runs without --providers: all but the paged variant, which answers another question (what
# paging the K / V cache costs) and is asked for by name.
DEFAULT_PROVIDERS: tuple[str, ...] = tuple(p for p in PROVIDERS if p != "fa4_paged")
DEFAULT_PAGE_SIZE = 16
CUDNN = "sdpa_cudnn"

DEFAULT_HEAD_DIMS = (64, 128, 256)
DEFAULT_SEQLENS = (1024, 2048, 4096, 8192, 16384)
QUICK_HEAD_DIMS = (64, 128)
QUICK_SEQLENS = (1024, 4096)
# FlexAttention compiles Triton kernels for every shape (seconds per cell) and the papers
# report it at d=128 only; --flex-head-dims widens this.
DEFAULT_FLEX_HEAD_DIMS = (128,)
MODES = ("fwd", "bwd")


@dataclass(frozen=True)
class Cell:
    """One benchmark shape; batch and heads follow from the fixed token and width budgets."""

    mode: str  # "fwd" or "bwd"
    causal: bool
    head_dim: int
    seqlen: int
    # GQA / MQA and small-batch cells (--kv-heads, --batch); None: the papers' grid (MHA,
    # batch = TOKENS / seqlen).
    kv_heads_override: int | None = None
    batch_override: int | None = None
    # Query length when it differs from the key length `seqlen` (--seqlen-q: decoding, chunked
    # prefill; non-causal only, where SDPA's mask convention cannot differ from ours).
    seqlen_q_override: int | None = None

    @property
    def seqlen_q(self) -> int:
        return self.seqlen_q_override or self.seqlen

    @property
    def batch(self) -> int:
        return self.batch_override or max(1, TOKENS // self.seqlen)

    @property
    def heads(self) -> int:
        return max(1, MODEL_DIM // self.head_dim)

    @property
    def kv_heads(self) -> int:
        return self.kv_heads_override or self.heads

    @property
    def flops(self) -> float:
        return attention_flops(self.batch, self.heads, self.seqlen, self.head_dim, self.causal,
                               self.mode, self.seqlen_q)

    def describe(self) -> str:
        kv = f", h_kv={self.kv_heads}" if self.kv_heads != self.heads else ""
        s = f"{self.seqlen_q}x{self.seqlen}" if self.seqlen_q != self.seqlen else str(self.seqlen)
        return (f"{self.mode} {'causal' if self.causal else 'non-causal'} d={self.head_dim} "
                f"s={s} (b={self.batch}, h={self.heads}{kv})")


def attention_flops(batch: int, heads: int, seqlen: int, head_dim: int, causal: bool,
                    mode: str, seqlen_q: int | None = None) -> float:
    """FLOPs credited to one call: 4·b·h·s_q·s·d for the two forward matmuls (s_q = s unless
    given), halved when causal, times 2.5 for the backward. Masked work is not credited, as in the
    papers."""
    seqlen_q = seqlen if seqlen_q is None else seqlen_q
    if causal and seqlen_q != seqlen:
        raise ValueError("causal FLOPs are defined for seqlen_q == seqlen only")
    flops = 4.0 * batch * heads * seqlen_q * seqlen * head_dim
    if causal:
        flops /= 2
    if mode == "bwd":
        flops *= BWD_FLOPS_FACTOR
    elif mode != "fwd":
        raise ValueError(f"mode must be 'fwd' or 'bwd', got {mode!r}")
    return flops


def tflops(flops: float, ms: float) -> float:
    return flops / (ms * 1e-3) / 1e12


def parse_int_list(text: str) -> tuple[int, ...]:
    """'64,128, 256' -> (64, 128, 256); rejects empty items and non-positive values."""
    try:
        values = tuple(int(item) for item in text.split(","))
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None
    if any(v <= 0 for v in values):
        raise ValueError(f"values must be positive, got {text!r}")
    return values


def parse_causal(choice: str) -> tuple[bool, ...]:
    return {"both": (False, True), "no": (False,), "yes": (True,)}[choice]


def parse_modes(choice: str) -> tuple[str, ...]:
    return MODES if choice == "both" else (choice,)


def parse_providers(text: str) -> tuple[str, ...]:
    """'all' or a comma-separated subset of PROVIDERS, returned in table order."""
    if text == "all":
        return PROVIDERS
    names = {item.strip() for item in text.split(",") if item.strip()}
    unknown = names - set(PROVIDERS)
    if unknown or not names:
        raise ValueError(f"unknown providers {sorted(unknown)}; choose from {', '.join(PROVIDERS)}")
    return tuple(p for p in PROVIDERS if p in names)


def build_grid(modes: tuple[str, ...], causals: tuple[bool, ...], head_dims: tuple[int, ...],
               seqlens: tuple[int, ...], kv_heads: int | None = None,
               batch: int | None = None, seqlen_q: int | None = None) -> list[Cell]:
    """Cells in table order: one table per (mode, causal), rows head_dim × seqlen. kv_heads must
    divide every head_dim's head count (2048 / head_dim); seqlen_q (the query length of every
    cell, keys = seqlen) needs non-causal cells: SDPA aligns a causal mask top-left, fa4
    bottom-right, so with unequal lengths they would not compute the same thing."""
    if seqlen_q is not None and any(causals):
        raise ValueError(f"seqlen_q {seqlen_q} needs non-causal cells only (causal=no): SDPA's "
                         "causal mask is top-left aligned, fa4's bottom-right")
    if kv_heads is not None:
        for d in head_dims:
            heads = Cell("fwd", False, d, 1).heads
            if heads % kv_heads != 0:
                raise ValueError(f"kv_heads {kv_heads} does not divide the {heads} query heads of "
                                 f"head_dim {d} (heads = {MODEL_DIM} / head_dim)")
    return [Cell(m, c, d, s, kv_heads, batch, seqlen_q)
            for m in modes for c in causals for d in head_dims for s in seqlens]
