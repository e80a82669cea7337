"""Naive attention, the oracle the kernels are tested against.

Materialises the full score matrix, so it is only for small problems. It follows the op contract
(README "Semantics") independently of the tiled kernels: bottom-right aligned causal / sliding-window
masks, softcap before masking, GQA, learnable sink in the denominator, and varlen through per-sequence
calls (`attention_ref_varlen`). Computation happens in `compute_dtype` (float64 by default; pass the
input dtype to get the "same-dtype PyTorch" error used by the tolerance rule).
"""

from __future__ import annotations

import math

import torch


def visible_mask(seqlen_q: int, seqlen_k: int, causal: bool, window_size=(-1, -1), device=None):
    """(seqlen_q, seqlen_k) bool: True where query row i may attend to key j."""
    left, right = window_size
    if causal:
        right = 0
    row = torch.arange(seqlen_q, device=device).view(-1, 1)
    col = torch.arange(seqlen_k, device=device).view(1, -1)
    diag = row + seqlen_k - seqlen_q
    mask = torch.ones(seqlen_q, seqlen_k, dtype=torch.bool, device=device)
    if right >= 0:
        mask &= col <= diag + right
    if left >= 0:
        mask &= col >= diag - left
    return mask


def attention_ref(q, k, v, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                  learnable_sink=None, compute_dtype=torch.float64):
    """q (b, sq, hq, d), k (b, sk, hkv, d), v (b, sk, hkv, dv) -> out (b, sq, hq, dv) in
    compute_dtype, lse (b, hq, sq) float32, natural log."""
    b, sq, hq, d = q.shape
    sk, hkv = k.shape[1], k.shape[2]
    if softmax_scale is None:
        softmax_scale = 1.0 / math.sqrt(d)
    group = hq // hkv
    qc = q.to(compute_dtype).transpose(1, 2)                         # b, hq, sq, d
    kc = k.to(compute_dtype).repeat_interleave(group, dim=2).transpose(1, 2)
    vc = v.to(compute_dtype).repeat_interleave(group, dim=2).transpose(1, 2)
    scores = torch.matmul(qc, kc.transpose(-1, -2)) * softmax_scale
    if softcap > 0:
        scores = softcap * torch.tanh(scores / softcap)
    mask = visible_mask(sq, sk, causal, window_size, device=q.device)
    scores = scores.masked_fill(~mask, float("-inf"))
    if learnable_sink is not None:
        sink = learnable_sink.to(compute_dtype).view(1, hq, 1, 1).expand(b, hq, sq, 1)
        scores = torch.cat([scores, sink], dim=-1)
    lse = torch.logsumexp(scores, dim=-1)                            # b, hq, sq
    # exp(-inf - (-inf)) would be NaN for rows that see nothing: subtract a finite stand-in.
    safe_lse = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
    probs = torch.exp(scores - safe_lse.unsqueeze(-1))
    if learnable_sink is not None:
        probs = probs[..., :sk]
    out = torch.matmul(probs, vc).transpose(1, 2)
    return out, lse.float()


def attention_ref_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, seqused_q=None, seqused_k=None,
                         **kwargs):
    """Packed (total, heads, d) tensors; returns out (total_q, hq, dv) in compute_dtype and lse
    (hq, total_q). Rows past seqused_q stay 0 here; tests compare only the used rows."""
    cq = cu_seqlens_q.tolist()
    ck = cu_seqlens_k.tolist()
    outs = torch.zeros(q.shape[0], q.shape[1], v.shape[2], device=q.device,
                       dtype=kwargs.get("compute_dtype", torch.float64))
    lse = torch.zeros(q.shape[1], q.shape[0], dtype=torch.float32, device=q.device)
    for i in range(len(cq) - 1):
        lq = cq[i + 1] - cq[i] if seqused_q is None else int(seqused_q[i])
        lk = ck[i + 1] - ck[i] if seqused_k is None else int(seqused_k[i])
        if lq == 0:
            continue
        o, l = attention_ref(q[cq[i]:cq[i] + lq].unsqueeze(0), k[ck[i]:ck[i] + lk].unsqueeze(0),
                             v[ck[i]:ck[i] + lk].unsqueeze(0), **kwargs)
        outs[cq[i]:cq[i] + lq] = o[0]
        lse[:, cq[i]:cq[i] + lq] = l[0]
    return outs, lse
