"""Python side of the fa4 ops: fake (meta) kernels for torch.compile and autograd for fa4::fwd.

The C++ library defines the schemas and the real kernels (see csrc/api/ops.cpp); this module only
adds what the dispatcher needs from Python.
"""

from __future__ import annotations

import torch

# fa4::fwd's arguments in schema order; backward() returns one gradient slot per entry.
FWD_ARGS = (
    "q", "k", "v", "cu_seqlens_q", "cu_seqlens_k", "seqused_q", "seqused_k", "max_seqlen_q",
    "max_seqlen_k", "page_table", "learnable_sink", "softmax_scale", "causal", "window_size_left",
    "window_size_right", "softcap", "num_splits", "pack_gqa", "deterministic", "q_descale",
    "k_descale", "v_descale",
)


def _out_and_lse_shapes(q, v, cu_seqlens_q):
    out_shape = (*q.shape[:-1], v.shape[-1])
    if cu_seqlens_q is not None:
        return out_shape, (q.shape[1], q.shape[0])
    return out_shape, (q.shape[0], q.shape[2], q.shape[1])


def _check_devices(q, named):
    """The real kernels check devices in C++; a meta/fake tensor among the arguments routes the call
    here instead, so the same check runs here too."""
    for name, t in named.items():
        if isinstance(t, torch.Tensor) and t.device != q.device:
            raise RuntimeError(f"fa4: {name} must be on the same device as q ({q.device}), got {t.device}")


@torch.library.register_fake("fa4::fwd")
def _fwd_fake(q, k, v, cu_seqlens_q=None, *args, **kwargs):
    _check_devices(q, dict(zip(FWD_ARGS[1:], (k, v, cu_seqlens_q, *args)), **kwargs))
    out_shape, lse_shape = _out_and_lse_shapes(q, v, cu_seqlens_q)
    return q.new_empty(out_shape), q.new_empty(lse_shape, dtype=torch.float32)


@torch.library.register_fake("fa4::fwd.out")
def _fwd_out_fake(q, *args, **kwargs):
    _check_devices(q, dict(zip(FWD_ARGS[1:], args), **kwargs))


@torch.library.register_fake("fa4::bwd")
def _bwd_fake(dout, q, k, v, out, lse, cu_seqlens_q=None, cu_seqlens_k=None, seqused_q=None,
              seqused_k=None, max_seqlen_q=None, max_seqlen_k=None, learnable_sink=None, *args, **kwargs):
    _check_devices(q, dict(dout=dout, k=k, v=v, out=out, lse=lse, cu_seqlens_q=cu_seqlens_q,
                           cu_seqlens_k=cu_seqlens_k, seqused_q=seqused_q, seqused_k=seqused_k,
                           learnable_sink=learnable_sink, **kwargs))
    dsink_shape = (q.shape[-2],) if learnable_sink is not None else (0,)
    return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v),
            q.new_empty(dsink_shape, dtype=torch.float32))


def _save(ctx, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, seqused_q, seqused_k, max_seqlen_q,
          max_seqlen_k, page_table, learnable_sink, softmax_scale, causal, window_size_left,
          window_size_right, softcap, deterministic):
    if page_table is not None and any(ctx.needs_input_grad[:3]):
        raise NotImplementedError(
            "fa4: not implemented: the backward of paged-KV attention (page_table); paged KV is "
            "for inference, call it under torch.no_grad()")
    ctx.save_for_backward(q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, seqused_q, seqused_k,
                          learnable_sink)
    # fa4::bwd's arguments after learnable_sink, in schema order (positional: no keyword parsing).
    ctx.bwd_scalars = (softmax_scale, causal, window_size_left, window_size_right, softcap,
                       deterministic)
    ctx.max_seqlens = (max_seqlen_q, max_seqlen_k)
    # Unused outputs (usually lse) then arrive as None instead of zeros: no dlse work for them.
    ctx.set_materialize_grads(False)


def _grads(ctx, dout, dlse):
    """dq, dk, dv, dsink (None without a sink) from fa4::bwd."""
    q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, seqused_q, seqused_k, sink = ctx.saved_tensors
    if dout is None:
        dout = torch.zeros_like(out)
    dq, dk, dv, dsink = torch.ops.fa4.bwd(
        dout if dout.stride(-1) == 1 else dout.contiguous(), q, k, v, out, lse,
        cu_seqlens_q, cu_seqlens_k, seqused_q, seqused_k, *ctx.max_seqlens, sink,
        *ctx.bwd_scalars, None if dlse is None else dlse.contiguous())
    return dq, dk, dv, dsink if sink is not None else None


def _setup_context(ctx, inputs, output):
    (q, k, v, cu_seqlens_q, cu_seqlens_k, seqused_q, seqused_k, max_seqlen_q, max_seqlen_k,
     page_table, sink, softmax_scale, causal, left, right, softcap, _num_splits, _pack_gqa,
     deterministic) = inputs[:19]
    _save(ctx, q, k, v, *output, cu_seqlens_q, cu_seqlens_k, seqused_q, seqused_k, max_seqlen_q,
          max_seqlen_k, page_table, sink, softmax_scale, causal, left, right, softcap,
          deterministic)


_NO_GRADS_Q_TO_SINK = (None,) * 7   # cu_seqlens_q .. page_table
_NO_GRADS_AFTER_SINK = (None,) * (len(FWD_ARGS) - 11)


def _backward(ctx, dout, dlse):
    dq, dk, dv, dsink = _grads(ctx, dout, dlse)
    return (dq, dk, dv, *_NO_GRADS_Q_TO_SINK, dsink, *_NO_GRADS_AFTER_SINK)  # FWD_ARGS order

torch.library.register_autograd("fa4::fwd", _backward, setup_context=_setup_context)

# Runs an op below the autograd dispatch key (inside AttentionFunction.forward, where grad mode
# is off anyway): otherwise the call goes through the registered formula's Python wrapper first.
_below_autograd = getattr(torch._C, "_AutoDispatchBelowAutograd", None)


class AttentionFunction(torch.autograd.Function):
    """fa4::fwd with the same autograd as above (one _save, one _grads), for eager calls.

    register_autograd's wrapper refills the defaults of the op's 22-argument schema on every call
    that needs grad; that costs ~100 us of host time on our CI machine and ~400 us on the H100's host
    (fwd d 128, b 1, s 2048: 524 us per call against a 105 us kernel, bench/probe_small_batch.py).
    The user functions take this path in eager mode; compiled graphs and direct op calls keep
    the registered formula. apply() takes the tensors that can need grad and the op's arguments as
    one tuple (FWD_ARGS order, without the trailing defaults): its per-argument work over all 22
    cost more than the rest of the call."""

    @staticmethod
    def forward(ctx, q, k, v, learnable_sink, args):
        if _below_autograd is not None:
            with _below_autograd():
                out, lse = torch.ops.fa4.fwd(*args)
        else:
            out, lse = torch.ops.fa4.fwd(*args)
        (_, _, _, cu_seqlens_q, cu_seqlens_k, seqused_q, seqused_k, max_seqlen_q, max_seqlen_k,
         page_table, _, softmax_scale, causal, left, right, softcap, _, _, deterministic) = args
        _save(ctx, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, seqused_q, seqused_k,
              max_seqlen_q, max_seqlen_k, page_table, learnable_sink, softmax_scale, causal, left,
              right, softcap, deterministic)
        return out, lse

    @staticmethod
    def backward(ctx, dout, dlse):
        return (*_grads(ctx, dout, dlse), None)
