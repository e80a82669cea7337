"""Representative sm90 forward cases for compute-sanitizer (memcheck / racecheck):
    PYTHONPATH=. compute-sanitizer --tool memcheck python3 bench/sanitize_fwd.py
Small shapes, every producer path: TMA boxes (batched tails, causal, GQA, softcap, sink), varlen with
empty sequences, paged KV through whole-tile boxes, 64-row boxes and the cp.async gather, and the
persistent grid (non-causal d <= 128, and d 192 with O staged in a V stage) with more tiles than SMs,
so CTAs reuse sQ / sO across tiles,
and d 64's three- and four-warpgroup kernels with warpgroups that have no rows in a tile."""
import torch

import flash_attn4 as fa


def check(name, out):
    torch.cuda.synchronize()
    assert torch.isfinite(out).all(), name
    print(f"{name}: ok", flush=True)


def t(*shape, d=128):
    return torch.randn(*shape, d, device="cuda", dtype=torch.bfloat16)


torch.manual_seed(0)
for d in (64, 96, 128, 192, 256):
    q, k, v = t(2, 300, 4, d=d), t(2, 333, 2, d=d), t(2, 333, 2, d=d)
    sink = torch.randn(4, device="cuda")
    check(f"d{d} batched causal gqa softcap sink",
          fa.flash_attn_func(q, k, v, causal=True, softcap=5.0, learnable_sink=sink))

lens_q, lens_k = [0, 130, 1, 200], [7, 129, 0, 260]
cu = lambda lens: torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), device="cuda", dtype=torch.int32)
q, k, v = t(sum(lens_q), 4), t(sum(lens_k), 1), t(sum(lens_k), 1)
check("varlen mqa window", fa.flash_attn_varlen_func(q, k, v, cu(lens_q), cu(lens_k), max(lens_q), max(lens_k),
                                                     window_size=(40, 3)))

lens_k = [300, 1, 517]
used_k = torch.tensor(lens_k, dtype=torch.int32, device="cuda")
for page_size, d, causal, softcap in [(256, 128, True, 0.0), (64, 128, False, 0.0), (16, 128, False, 0.0),
                                      (3, 128, True, 0.0), (5, 64, False, 20.0), (7, 256, True, 0.0), (1, 96, False, 0.0)]:
    pages_per_seq = -(-max(lens_k) // page_size)
    table = torch.randperm(3 * pages_per_seq, device="cuda").view(3, pages_per_seq).to(torch.int32)
    k_pages, v_pages = t(3 * pages_per_seq, page_size, 2, d=d), t(3 * pages_per_seq, page_size, 2, d=d)
    q = t(3 * 70, 4, d=d)
    out = fa.flash_attn_varlen_func(q, k_pages, v_pages, cu([70] * 3), None, 70, None, causal=causal,
                                    softcap=softcap, seqused_k=used_k, page_table=table)
    check(f"paged page_size {page_size} d{d} causal={causal} softcap={softcap}", out)
# The gather kernels walking tiles from the counter (d <= 128): more tiles than 2 per SM, an empty
# sequence and a keyless one among them.
lens_q, lens_k = [600, 0, 600, 130] * 4, [650, 9, 0, 600] * 4
used_k = torch.tensor(lens_k, dtype=torch.int32, device="cuda")
for page_size, d, causal in [(16, 128, True), (5, 64, False)]:
    pages_per_seq = -(-max(lens_k) // page_size)
    table = torch.randperm(16 * pages_per_seq, device="cuda").view(16, pages_per_seq).to(torch.int32)
    k_pages, v_pages = t(16 * pages_per_seq, page_size, 2, d=d), t(16 * pages_per_seq, page_size, 2, d=d)
    q = t(sum(lens_q), 8, d=d)
    out = fa.flash_attn_varlen_func(q, k_pages, v_pages, cu(lens_q), None, max(lens_q), None,
                                    causal=causal, seqused_k=used_k, page_table=table, pack_gqa=False)
    check(f"paged gather many tiles page_size {page_size} d{d} causal={causal}", out)

sms = torch.cuda.get_device_properties(0).multi_processor_count
for d in (64, 128):
    s = 128 * (-(-2 * sms // 16)) + 37  # >= 2 tiles per CTA over 2 x 8 heads, a ragged last block
    q, k, v = t(2, s, 8, d=d), t(2, s + 50, 8, d=d), t(2, s + 50, 8, d=d)
    check(f"persistent d{d} {s}x{s + 50}", fa.flash_attn_func(q, k, v))
    check(f"persistent (tile counter) causal d{d} {s}x{s + 50}", fa.flash_attn_func(q, k, v, causal=True))
# d 192: both warpgroups stage O in turn in the last key block's V stage; keyless tiles (lens_k 0).
s = 128 * (-(-2 * sms // 16)) + 37
q, k, v = t(2, s, 8, d=192), t(2, s + 50, 8, d=192), t(2, s + 50, 8, d=192)
check(f"persistent (O in V) d192 {s}x{s + 50}", fa.flash_attn_func(q, k, v))
check(f"persistent (O in V, tile counter) causal d192 {s}x{s + 50}", fa.flash_attn_func(q, k, v, causal=True))
lens_q, lens_k = [900, 0, 300, 77] * 8, [1000, 5, 0, 300] * 8
q, k, v = t(sum(lens_q), 4, d=192), t(sum(lens_k), 2, d=192), t(sum(lens_k), 2, d=192)
check("persistent (O in V) varlen gqa d192", fa.flash_attn_varlen_func(q, k, v, cu(lens_q), cu(lens_k),
                                                                      max(lens_q), max(lens_k)))
# d 192 / d_v 128: each warpgroup stages O in its own half of the V stage.
q, k, v = t(2, s, 8, d=192), t(2, s + 50, 8, d=192), t(2, s + 50, 8, d=128)
check(f"persistent (O in V, two slabs) d192 v128 {s}x{s + 50}", fa.flash_attn_func(q, k, v))
check(f"persistent (O in V, two slabs, tile counter) window d192 v128 {s}x{s + 50}",
      fa.flash_attn_func(q, k, v, window_size=(300, 0)))
q, k, v = t(sum(lens_q), 4), t(sum(lens_k), 2), t(sum(lens_k), 2)
check("persistent varlen gqa", fa.flash_attn_varlen_func(q, k, v, cu(lens_q), cu(lens_k), max(lens_q),
                                                         max(lens_k)))
check("persistent (tile counter) varlen gqa window",
      fa.flash_attn_varlen_func(q, k, v, cu(lens_q), cu(lens_k), max(lens_q), max(lens_k),
                                window_size=(200, 0)))

# d 64 without a mask below 2048 query rows: four consumer warpgroups (256-row tiles; two of the four
# without rows in each last tile), several tiles per CTA; from 8192 rows with a causal mask: three,
# two of them without rows in the last tile.
q, k, v = t(4, 1100, 16, d=64), t(4, 700, 16, d=64), t(4, 700, 16, d=64)
check("d64 four warpgroups 1100x700", fa.flash_attn_func(q, k, v))
q, k, v = t(1, 8260, 4, d=64), t(1, 700, 2, d=64), t(1, 700, 2, d=64)
check("d64 three warpgroups causal 8260x700", fa.flash_attn_func(q, k, v, causal=True))

# Packed GQA: the consumers load Q rows of G heads themselves (cp.async, zero-filled past the
# sequence) and store O per row; decoding against a paged cache, a non-power-of-two group with a
# causal mask and a sink, and a persistent walk of several packed tiles per CTA.
lens_k = [300, 1, 517]
used_k = torch.tensor(lens_k, dtype=torch.int32, device="cuda")
for page_size in (256, 5):
    pages_per_seq = -(-max(lens_k) // page_size)
    table = torch.randperm(3 * pages_per_seq, device="cuda").view(3, pages_per_seq).to(torch.int32)
    k_pages, v_pages = t(3 * pages_per_seq, page_size, 2), t(3 * pages_per_seq, page_size, 2)
    q = t(3, 16)
    check(f"packed gqa decode paged page_size {page_size}",
          fa.flash_attn_varlen_func(q, k_pages, v_pages, cu([1] * 3), None, 1, None, causal=True,
                                    seqused_k=used_k, page_table=table, pack_gqa=True))
for d in (64, 128, 192, 256):
    q, k, v = t(2, 37, 6, d=d), t(2, 400, 2, d=d), t(2, 400, 2, d=d)
    check(f"packed gqa causal sink d{d}", fa.flash_attn_func(
        q, k, v, causal=True, learnable_sink=torch.randn(6, device="cuda"), pack_gqa=True))
q, k, v = t(64, 40, 16), t(64, 900, 2), t(64, 900, 2)
check("packed gqa persistent 64 x 40 rows x 8 heads", fa.flash_attn_func(q, k, v, pack_gqa=True))
check("packed gqa persistent (tile counter) causal", fa.flash_attn_func(q, k, v, causal=True, pack_gqa=True))
# Split-KV: partial O / lse into the workspace, merged by the combine kernel; decoding (packed,
# paged), MHA with a causal mask leaving splits without keys, and d 192 (O in a V stage).
q = t(3, 16)
check("split-kv packed decode paged", fa.flash_attn_varlen_func(
    q, k_pages, v_pages, cu([1] * 3), None, 1, None, seqused_k=used_k, page_table=table,
    learnable_sink=torch.randn(16, device="cuda"), num_splits=0))
for d in (64, 128, 192, 256):
    q, k, v = t(2, 37, 4, d=d), t(2, 900, 4, d=d), t(2, 900, 4, d=d)
    check(f"split-kv mha causal d{d}", fa.flash_attn_func(q, k, v, causal=True, num_splits=5))
