"""The attention implementations under test, behind one interface.

Every provider takes q, k, v in (batch, seqlen, heads, head_dim) and returns a zero-argument
callable that runs the attention and returns out in the same layout. Layout changes for the peers
((b, h, s, d) transposed views), block masks and compilation happen in `build`, outside the timed
region; the transpose back of the output is a view and launches no kernel.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import flash_attn4

from .config import DEFAULT_PAGE_SIZE, Cell

Run = Callable[[], torch.Tensor]


@dataclass(frozen=True)
class Provider:
    name: str
    build: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, bool], Run]
    # Entered around build, the first call and the timing (SDPA picks its backend per call).
    context: Callable[[], AbstractContextManager] = nullcontext
    # Head dims this provider runs on; None means all.
    head_dims: tuple[int, ...] | None = field(default=None)
    # Modes this provider measures; None means both.
    modes: tuple[str, ...] | None = field(default=None)
    # Measures something only where K / V heads are fewer than query heads.
    gqa_only: bool = False

    def skip_reason(self, cell: Cell) -> str | None:
        if self.modes is not None and cell.mode not in self.modes:
            return f"{self.name} measures only {'/'.join(self.modes)}"
        if self.head_dims is not None and cell.head_dim not in self.head_dims:
            return f"head_dim {cell.head_dim} not in --flex-head-dims {list(self.head_dims)}"
        if self.gqa_only and cell.kv_heads == cell.heads:
            return f"{self.name} differs from fa4 only with GQA / MQA (--kv-heads)"
        return None


def _to_bhsd(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.transpose(1, 2) for t in tensors]


def expand_kv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """GQA / MQA for the peers that take one K / V head per query head: k and v repeated over
    each group (query head h reads kv head h // group, fa4's convention). Done in build, outside
    the timed region; a backward through it sums the group's gradients, as a GQA user's would."""
    group = q.shape[2] // k.shape[2]
    if group == 1:
        return q, k, v
    return q, k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)


def _build_fa4(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
               deterministic: bool = False, pack_gqa: bool | None = None,
               num_splits: int = 1) -> Run:
    return lambda: flash_attn4.flash_attn_func(q, k, v, causal=causal, deterministic=deterministic,
                                               pack_gqa=pack_gqa, num_splits=num_splits)


def _build_fa4_paged(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                     page_size: int, num_splits: int = 1) -> Run:
    """fa4 reading K / V from a paged cache: each sequence's keys copied into pages of page_size
    keys (the last one padded) placed in a random order, addressed through
    flash_attn_varlen_func's page_table with the key lengths in seqused_k. The copy happens here,
    outside the timed region. Forward only (paged KV has no backward)."""
    batch, seqlen_q, heads, head_dim = q.shape
    seqlen_k, kv_heads = k.shape[1], k.shape[2]
    pages = -(-seqlen_k // page_size)
    order = torch.randperm(batch * pages, generator=torch.Generator().manual_seed(0)).to(k.device)

    def paginate(x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x.detach(), (0, 0, 0, 0, 0, pages * page_size - seqlen_k))
        paged = torch.empty((batch * pages, page_size, kv_heads, x.shape[3]), dtype=x.dtype,
                            device=x.device)
        paged[order] = padded.reshape(batch * pages, page_size, kv_heads, x.shape[3])
        return paged

    k_pages, v_pages = paginate(k), paginate(v)
    table = order.view(batch, pages).to(torch.int32)  # page j of sequence i is k_pages[table[i, j]]
    seqused_k = torch.full((batch,), seqlen_k, dtype=torch.int32, device=k.device)
    cu_seqlens_q = torch.arange(0, (batch + 1) * seqlen_q, seqlen_q, dtype=torch.int32,
                                device=q.device)
    q_packed = q.detach().reshape(batch * seqlen_q, heads, head_dim)
    return lambda: flash_attn4.flash_attn_varlen_func(
        q_packed, k_pages, v_pages, cu_seqlens_q, None, seqlen_q, None, causal=causal,
        seqused_k=seqused_k, page_table=table, num_splits=num_splits).view(batch, seqlen_q, heads, -1)


def _build_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> Run:
    qt, kt, vt = _to_bhsd(*expand_kv(q, k, v))
    return lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal).transpose(1, 2)


def _causal_mod(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def _build_flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> Run:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    # A fresh Dynamo cache per cell: exactly one compile per shape, so the grid never reaches the
    # recompile limit (past it, flex silently runs an unfused eager path). fullgraph=True turns a
    # graph break, i.e. an unfused fallback, into an error instead of a slow number.
    torch._dynamo.reset()
    compiled = torch.compile(flex_attention, dynamic=False, fullgraph=True)
    seqlen = q.shape[1]
    block_mask = (create_block_mask(_causal_mod, B=None, H=None, Q_LEN=seqlen, KV_LEN=seqlen,
                                    device=q.device) if causal else None)
    qt, kt, vt = _to_bhsd(*expand_kv(q, k, v))
    return lambda: compiled(qt, kt, vt, block_mask=block_mask).transpose(1, 2)


def make_providers(names: tuple[str, ...], flex_head_dims: tuple[int, ...],
                   num_splits: int = 1, page_size: int = DEFAULT_PAGE_SIZE) -> list[Provider]:
    """The providers named, in the given order; fa4's forwards with `num_splits`, fa4_paged's
    pages of `page_size` keys."""
    available = {
        "fa4": Provider("fa4", partial(_build_fa4, num_splits=num_splits)),
        # The deterministic backward (ordered dQ accumulation); its forward is fa4's.
        "fa4_det": Provider("fa4_det", partial(_build_fa4, deterministic=True), modes=("bwd",)),
        # One query head per tile even where fa4 would pack a GQA group's heads into its tiles
        # (what packing is worth, measured in the same run).
        "fa4_nopack": Provider("fa4_nopack", partial(_build_fa4, pack_gqa=False, num_splits=num_splits),
                               modes=("fwd",),
                               gqa_only=True),
        # The K / V cache paged (what paging costs, against fa4 in the same run).
        "fa4_paged": Provider("fa4_paged", partial(_build_fa4_paged, page_size=page_size,
                                                   num_splits=num_splits), modes=("fwd",)),
        "sdpa_cudnn": Provider("sdpa_cudnn", _build_sdpa,
                               partial(sdpa_kernel, SDPBackend.CUDNN_ATTENTION)),
        "sdpa_flash": Provider("sdpa_flash", _build_sdpa,
                               partial(sdpa_kernel, SDPBackend.FLASH_ATTENTION)),
        "sdpa_efficient": Provider("sdpa_efficient", _build_sdpa,
                                   partial(sdpa_kernel, SDPBackend.EFFICIENT_ATTENTION)),
        "flex": Provider("flex", _build_flex, head_dims=flex_head_dims),
    }
    return [available[name] for name in names]
