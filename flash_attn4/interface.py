"""User functions, with flash-attn's names and argument names so that porting is one import line.

Layout (batch, seqlen, heads, head_dim); varlen packs (total_tokens, heads, head_dim). The semantics
(masks aligned bottom-right, softcap, GQA, sink, lse) are the README's "Semantics" section.
"""

from __future__ import annotations

import torch

from .ops import AttentionFunction

_NOT_IMPLEMENTED = "fa4: not implemented: "


def _window(window_size):
    if window_size is None or window_size == (-1, -1):
        return -1, -1
    if not isinstance(window_size, (tuple, list)) or len(window_size) != 2:
        raise ValueError(f"window_size must be a pair (left, right), got {window_size!r}")
    left, right = (-1 if w is None else w for w in window_size)
    if not all(isinstance(w, int) for w in (left, right)):
        raise TypeError(f"window_size entries must be int or None, got {window_size!r}")
    return left, right


def _call(op, *args, **kwargs):
    """Runs an fa4 op; requests that are valid but not built surface as NotImplementedError."""
    if torch.compiler.is_compiling():
        return op(*args, **kwargs)
    try:
        return op(*args, **kwargs)
    except RuntimeError as e:
        message = str(e)
        if _NOT_IMPLEMENTED in message:
            raise NotImplementedError(message[message.index(_NOT_IMPLEMENTED):].splitlines()[0]) from None
        raise


def _attention(q, k, v, *, softmax_scale, causal, window_size, softcap, learnable_sink,
               deterministic, return_lse, num_splits, pack_gqa, out, cu_seqlens_q=None,
               cu_seqlens_k=None, seqused_q=None, seqused_k=None, max_seqlen_q=None,
               max_seqlen_k=None, page_table=None):
    left, right = _window(window_size)
    # fa4::fwd's arguments in schema order (ops.FWD_ARGS), positional: keyword parsing costs host
    # time on every call.
    args = (q, k, v, cu_seqlens_q, cu_seqlens_k, seqused_q, seqused_k, max_seqlen_q, max_seqlen_k,
            page_table, learnable_sink, softmax_scale, causal, left, right, softcap, num_splits,
            pack_gqa, deterministic)
    needs_grad = torch.is_grad_enabled() and (
        q.requires_grad or k.requires_grad or v.requires_grad
        or (learnable_sink is not None and learnable_sink.requires_grad))
    if out is None:
        if needs_grad and not torch.compiler.is_compiling():
            # Eager autograd through AttentionFunction (ops.py says why).
            out, lse = _call(AttentionFunction.apply, q, k, v, learnable_sink, args)
        else:
            out, lse = _call(torch.ops.fa4.fwd, *args)
    else:
        if needs_grad:
            raise ValueError("out= writes into a preallocated buffer and has no backward; call it "
                             "under torch.no_grad() or drop out= (inputs require grad)")
        lse_shape = (q.shape[1], q.shape[0]) if cu_seqlens_q is not None else (q.shape[0], q.shape[2], q.shape[1])
        lse = q.new_empty(lse_shape, dtype=torch.float32)
        _call(torch.ops.fa4.fwd.out, *args, out=out, lse=lse)
    return (out, lse) if return_lse else out


def flash_attn_func(q, k, v, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                    learnable_sink=None, deterministic=False, return_lse=False, *, num_splits=1,
                    pack_gqa=None, out=None):
    """Exact softmax attention.

    q: (batch, seqlen_q, heads, head_dim); k, v: (batch, seqlen_k, heads_kv, head_dim[_v]),
    heads % heads_kv == 0 (GQA/MQA). softmax_scale defaults to head_dim ** -0.5. causal and
    window_size=(left, right) (-1: unbounded) are aligned to the bottom-right corner. softcap > 0
    caps scores as softcap * tanh(score / softcap). learnable_sink: float32 (heads,) logits that join
    the softmax denominator. deterministic: bitwise-reproducible backward. out: optional
    preallocated output (inference only). Returns out (batch, seqlen_q, heads, head_dim_v), and lse
    (batch, heads, seqlen_q) float32 if return_lse.
    """
    return _attention(q, k, v, softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                      softcap=softcap, learnable_sink=learnable_sink, deterministic=deterministic,
                      return_lse=return_lse, num_splits=num_splits, pack_gqa=pack_gqa, out=out)


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                           softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                           learnable_sink=None, deterministic=False, return_lse=False, *,
                           seqused_q=None, seqused_k=None, page_table=None, num_splits=1,
                           pack_gqa=None, out=None):
    """Variable-length attention over packed sequences.

    q: (total_q, heads, head_dim), k/v: (total_k, heads_kv, head_dim[_v]); cu_seqlens_q/k: int32
    (batch + 1,) prefix sums (zero-length sequences allowed); max_seqlen_q/k: the longest sequence.
    seqused_q/k: int32 (batch,) lengths actually used (override the cu_seqlens spans). Paged KV:
    pass page_table int32 (batch, max_pages) with k/v (num_pages, page_size, heads_kv, head_dim),
    cu_seqlens_k=None and key lengths in seqused_k. Returns out (total_q, heads, head_dim_v) and lse
    (heads, total_q) if return_lse.
    """
    return _attention(q, k, v, softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                      softcap=softcap, learnable_sink=learnable_sink, deterministic=deterministic,
                      return_lse=return_lse, num_splits=num_splits, pack_gqa=pack_gqa, out=out,
                      cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k, seqused_q=seqused_q,
                      seqused_k=seqused_k, max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k,
                      page_table=page_table)


def flash_attn_qkvpacked_func(qkv, softmax_scale=None, causal=False, window_size=(-1, -1),
                              softcap=0.0, learnable_sink=None, deterministic=False,
                              return_lse=False):
    """qkv: (batch, seqlen, 3, heads, head_dim); same semantics as flash_attn_func."""
    if qkv.dim() != 5 or qkv.shape[2] != 3:
        raise ValueError(f"qkv must have shape (batch, seqlen, 3, heads, head_dim), got {tuple(qkv.shape)}")
    q, k, v = qkv.unbind(dim=2)
    return flash_attn_func(q, k, v, softmax_scale=softmax_scale, causal=causal,
                           window_size=window_size, softcap=softcap, learnable_sink=learnable_sink,
                           deterministic=deterministic, return_lse=return_lse)
