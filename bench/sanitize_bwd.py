"""Representative sm90 backward cases for compute-sanitizer (memcheck / racecheck):
    PYTHONPATH=. compute-sanitizer --tool memcheck python3 bench/sanitize_bwd.py
Small shapes, every path: batched tails + causal + GQA + softcap + sink, varlen with empty
sequences (deterministic), seqused_q/k with NaN rows past them, d 64 / 96 / 128 / 192 / 256
(192 and 256 are the head-dimension-split kernel)."""
import torch

import flash_attn4 as fa


def run(name, fn):
    out = fn()
    grads = torch.autograd.grad(out, [t for t in LEAVES if t.requires_grad], torch.randn_like(out))
    torch.cuda.synchronize()
    assert all(torch.isfinite(g).all() for g in grads), name
    print(f"{name}: ok", flush=True)


def t(*shape, d=128, grad=True):
    return torch.randn(*shape, d, device="cuda", dtype=torch.bfloat16).requires_grad_(grad)


torch.manual_seed(0)
for d in (64, 96, 128, 192, 256):
    q, k, v = t(2, 300, 4, d=d), t(2, 333, 2, d=d), t(2, 333, 2, d=d)
    sink = torch.randn(4, device="cuda", requires_grad=True)
    LEAVES = [q, k, v, sink]
    run(f"d{d} batched causal gqa softcap sink", lambda: fa.flash_attn_func(
        q, k, v, causal=True, softcap=5.0, learnable_sink=sink))

# d 64 under a local mask without softcap zeroes P^T after the exponentials (per-key bit masks).
q, k, v = t(2, 300, 4, d=64), t(2, 333, 2, d=64), t(2, 333, 2, d=64)
LEAVES = [q, k, v]
run("d64 batched causal gqa", lambda: fa.flash_attn_func(q, k, v, causal=True))
run("d64 batched window gqa", lambda: fa.flash_attn_func(q, k, v, window_size=(50, 7)))

lens_q, lens_k = [0, 130, 1, 200], [7, 129, 0, 260]
cu = lambda lens: torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), device="cuda", dtype=torch.int32)
for d in (128, 256):
    q, k, v = t(sum(lens_q), 4, d=d), t(sum(lens_k), 1, d=d), t(sum(lens_k), 1, d=d)
    LEAVES = [q, k, v]
    run(f"d{d} varlen mqa window deterministic", lambda: fa.flash_attn_varlen_func(
        q, k, v, cu(lens_q), cu(lens_k), max(lens_q), max(lens_k), window_size=(40, 3), deterministic=True))

q, k, v = t(2, 200, 2, grad=False), t(2, 250, 2, grad=False), t(2, 250, 2, grad=False)
with torch.no_grad():
    q[:, 150:] = float("nan")
    k[:, 190:] = float("nan")
    v[:, 190:] = float("nan")
q.requires_grad_(True), k.requires_grad_(True), v.requires_grad_(True)
LEAVES = [q, k, v]
used_q = torch.tensor([150, 97], device="cuda", dtype=torch.int32)
used_k = torch.tensor([190, 1], device="cuda", dtype=torch.int32)


def seqused():
    cu_q = torch.tensor([0, 200], device="cuda", dtype=torch.int32)
    out = fa.flash_attn_varlen_func(q.view(-1, 2, 128)[:200], k.view(-1, 2, 128)[:250], v.view(-1, 2, 128)[:250],
                                    cu_q, torch.tensor([0, 250], device="cuda", dtype=torch.int32), 200, 250,
                                    seqused_q=used_q[:1], seqused_k=used_k[:1], causal=True)
    return out[:150]


run("seqused with NaN rows past it", seqused)
