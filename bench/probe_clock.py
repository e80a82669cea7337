# Sustained runs of one cell per provider while nvidia-smi samples SM clock, power and throttle
# reasons: is the long-sequence kernel clock / power limited?
# Usage: PYTHONPATH=. python3 bench/probe_clock.py [gemm]   (gemm: only the 8192^3 bf16 matrix product)
import subprocess, time, torch, torch.nn.functional as F, statistics, sys
from torch.nn.attention import SDPBackend, sdpa_kernel


def run(name, fn, seconds=3.0):
    fn(); torch.cuda.synchronize()
    smi = subprocess.Popen(["nvidia-smi", "--query-gpu=clocks.sm,power.draw,temperature.gpu,clocks_event_reasons.active",
                            "--format=csv,noheader", "-lms", "100"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    ev = []
    t0 = time.time()
    while time.time() - t0 < seconds:
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); fn(); e.record(); ev.append((s, e))
        if len(ev) % 20 == 0: torch.cuda.synchronize()
    torch.cuda.synchronize()
    smi.terminate(); lines = smi.communicate()[0].strip().splitlines()
    ts = [a.elapsed_time(b) for a, b in ev]
    n = len(ts); q = max(1, n // 5)
    print(f"{name}: {n} calls; per-call ms first fifth {statistics.median(ts[:q]):.3f}, last fifth {statistics.median(ts[-q:]):.3f}")
    samp = lines[3:-1]
    print("   smi:", " | ".join(samp[::max(1, len(samp)//8)]))
    time.sleep(2.0)

try:
    import pynvml  # noqa: F401
    print("pynvml available; torch.cuda.clock_rate():", torch.cuda.clock_rate(), "MHz, power_draw():", torch.cuda.power_draw(), "mW")
except Exception as exc:
    print("no pynvml:", exc)

# The GEMM ceiling under the same sustained load (the anchors' 790 TFLOP/s: 10 products after 3 warm-ups).
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
run("gemm 8192^3 bf16 (TFLOP/s = 1099.5 / ms)", lambda: a @ b)

cells = [(128, 16384, False, "fwd"), (128, 1024, False, "fwd"), (128, 16384, False, "bwd")]
if len(sys.argv) > 1 and sys.argv[1] == "gemm":
    cells = []
for d, s, causal, mode in cells:
    import flash_attn4
    b, h = 16384 // s, 2048 // d
    q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16, requires_grad=(mode == "bwd")) for _ in range(3))
    qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
    for prov in ("fa4", "cudnn", "fa4"):
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            f = (lambda: flash_attn4.flash_attn_func(q, k, v, causal=causal)) if prov == "fa4" else \
                (lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal))
            if mode == "bwd":
                o = f(); do = torch.randn_like(o)
                fn = lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True)
            else:
                fn = f
            run(f"{mode} d{d} s{s} {prov}", fn)
