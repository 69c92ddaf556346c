#!/usr/bin/python3
"""edm-mnist-small in PyTorch on a CUDA GPU: the anchor figures for diffuse's GPU path.

Measures PyTorch's twin of the network (tests/fixtures/make_fixtures.py's UNet, with the EDM
preconditioning, Heun sampler and training step of benchmarks/models/compare_pytorch.py):
  * the machine: torch, GPU, CUDA, and the matmul peak measured with a large torch.matmul
    (8192^3, 2 n^3 FLOPs) in FP32 (TF32 off), TF32 and BF16;
  * sampling: seconds for 16 images with the 18-step EDM Heun sampler (35 evaluations of
    D(x; sigma)), FP32, eager and torch.compile'd (mode default); median and range of the
    runs after warm-up runs;
  * forward latency: one D(x; sigma) at batch 1, in ms (eager and compiled);
  * training: images/s of full steps at batch 128 (forward, EDM loss, backward, AdamW,
    PyTorch's default implementation, and the EMA update of diffuse's Trainer, which
    compare_pytorch.py leaves out: EDM's half-life 500k images, ramp-up 0.05),
    after warm-up steps; median and range over chunks of steps. Rows: FP32 (TF32 off),
    BF16 (torch.autocast; loss, AdamW and EMA in FP32) and FP32 with TF32 allowed;
  * peak GPU memory (torch.cuda.max_memory_allocated) of each row.
FP32 rows set torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
(true FP32); the TF32 row sets both True. Times: torch.cuda.synchronize() around
time.perf_counter(). The TFLOP/s column counts the multiply-adds of every Conv2d, Linear and
of the attention matmuls (compare_pytorch.count_flops; training = 3 x forward).

Run from the repository root (standard library and torch only); about 2-3 minutes on an
H200, torch.compile included (its compile time is printed):

  python3 benchmarks/models/gpu_pytorch.py --json gpu_pytorch.json
  /usr/bin/python3 benchmarks/models/gpu_pytorch.py --device cpu --quick   # smoke test
"""
import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_pytorch as cp  # noqa: E402  (puts tests/fixtures on sys.path; no side effects)
import make_fixtures as mf  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

warnings.filterwarnings("ignore", message=".*TF32.*")  # torch >= 2.9: allow_tf32 "will be deprecated"


class UNet(mf.UNet):
    """make_fixtures.UNet, its noise embedding's frequencies made on the input's device."""

    def embedding(self, c_noise):
        half = self.C // 2
        freqs = (1.0 / 10000.0) ** (torch.arange(half, dtype=torch.float64, device=c_noise.device) / half)
        arg = c_noise.to(torch.float64).outer(freqs).to(c_noise.dtype)
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class Denoiser(nn.Module):
    """D(x; sigma) = c_skip x + c_out F(c_in x, ln(sigma) / 4), as compare_pytorch.py's denoise."""

    def __init__(self):
        super().__init__()
        self.net = UNet(mf.EDM_MNIST_SMALL)

    def forward(self, x, sigma):
        sd, s = cp.SIGMA_DATA, sigma.view(-1, 1, 1, 1)
        c_skip = sd ** 2 / (s ** 2 + sd ** 2)
        c_out = s * sd / (s ** 2 + sd ** 2).sqrt()
        c_in = 1 / (s ** 2 + sd ** 2).sqrt()
        return c_skip * x + c_out * self.net(c_in * x, sigma.log() / 4)


class FP32GroupNorm(nn.GroupNorm):
    """CPU BF16 only: torch 1.13's CPU autocast fails in GroupNorm (CUDA autocast runs it in FP32 itself)."""

    def forward(self, x):
        with torch.autocast("cpu", enabled=False):
            return super().forward(x.float())


def set_tf32(on):
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, dev):
    sync(dev)
    t0 = time.perf_counter()
    fn()
    sync(dev)
    return time.perf_counter() - t0


def reset_peak(dev):
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_mib(dev):
    return torch.cuda.max_memory_allocated() / 2 ** 20 if dev.type == "cuda" else None


def heun_sigmas(steps=cp.HEUN_STEPS, smin=0.002, smax=80.0, rho=7.0):
    t = [(smax ** (1 / rho) + i / (steps - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho for i in range(steps)]
    return t + [0.0]


def heun(model, n, dev, sig=heun_sigmas()):
    """EDM's deterministic Heun sampler (compare_pytorch.py): 2 x steps - 1 evaluations."""
    x = torch.randn(n, 1, 28, 28, device=dev) * sig[0]
    for s, s_next in zip(sig[:-1], sig[1:]):
        d = (x - model(x, torch.full((n,), s, device=dev))) / s
        x_next = x + (s_next - s) * d
        if s_next > 0:
            d2 = (x_next - model(x_next, torch.full((n,), s_next, device=dev))) / s_next
            x_next = x + (s_next - s) * 0.5 * (d + d2)
        x = x_next
    return x


def matmul_peak(dev, n, reps):
    """TFLOP/s of reps back-to-back n^3 matmuls: FP32 (TF32 off), TF32, BF16."""
    out = {}
    for name, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                              ("bf16", torch.bfloat16, False)):
        if name == "tf32" and dev.type != "cuda":
            continue
        set_tf32(tf32)
        x, y = torch.randn(n, n, device=dev).to(dtype), torch.randn(n, n, device=dev).to(dtype)
        torch.matmul(x, y)
        out[name] = 2 * n ** 3 * reps / timed(lambda: [torch.matmul(x, y) for _ in range(reps)], dev) / 1e12
    set_tf32(False)
    return out


def failure(e):
    lines = str(e).strip().splitlines()
    return f"failed: {type(e).__name__}" + (f": {lines[0][:300]}" if lines else "")


def row(name, unit, vals, work=None, mem=None, **extra):
    """A table row; work: FLOPs per unit of the value (per second for rates)."""
    r = {"name": name, "unit": unit, "median": statistics.median(vals), "min": min(vals), "max": max(vals),
         "runs": len(vals), "peak_mem_mib": mem, **extra}
    if work:  # FLOP/s: work x rate for images/s, work / time for s and ms
        rate = r["median"] if unit == "images/s" else 1 / (r["median"] * (1e-3 if unit == "ms" else 1))
        r["tflops"] = work * rate / 1e12
    return r


def bench_inference(a, dev, fwd_flops):
    rows, note = [], None
    set_tf32(False)
    torch.manual_seed(0)
    eager = Denoiser().to(dev).eval()
    variants = [("eager", eager)]
    if not hasattr(torch, "compile"):
        note = f"unavailable (torch {torch.__version__})"
    elif a.no_compile:
        note = "skipped (--no-compile)"
    else:
        variants.append(("compiled", torch.compile(eager)))
    x1, s1 = torch.randn(1, 1, 28, 28, device=dev), torch.ones(1, device=dev)
    for label, model in variants:
        try:
            reset_peak(dev)
            with torch.inference_mode():
                t_first = timed(lambda: model(torch.randn(a.images, 1, 28, 28, device=dev),
                                              torch.ones(a.images, device=dev)), dev)
                extra = {"compile_s": t_first} if label == "compiled" else {}
                for _ in range(a.sample_warmup):
                    heun(model, a.images, dev)
                vals = [timed(lambda: heun(model, a.images, dev), dev) for _ in range(a.sample_runs)]
                rows.append(row(f"Heun-{cp.HEUN_STEPS}, {a.images} images, FP32, {label}", "s", vals,
                                a.images * cp.HEUN_EVALS * fwd_flops, peak_mib(dev), **extra))
                if label == "compiled" and t_first > a.compile_budget:
                    rows.append({"name": "D(x; sigma), batch 1, FP32, compiled",
                                 "error": f"skipped: compiling took {t_first:.0f} s > --compile-budget"})
                    continue
                t_first = timed(lambda: model(x1, s1), dev)
                extra = {"compile_s": t_first} if label == "compiled" else {}
                for _ in range(a.fwd_warmup):
                    model(x1, s1)
                vals = [1e3 * timed(lambda: model(x1, s1), dev) for _ in range(a.fwd_calls)]
                rows.append(row(f"D(x; sigma), batch 1, FP32, {label}", "ms", vals, fwd_flops, **extra))
        except Exception as e:  # torch.compile failing is a result, not a crash
            rows.append({"name": f"inference, {label}", "error": failure(e)})
    if note:
        rows.append({"name": "torch.compile", "error": note})
    return rows


def bench_train(a, dev, precision, fwd_flops):
    torch.manual_seed(0)
    set_tf32(precision == "tf32")
    model = Denoiser()
    bf16 = precision == "bf16"
    if bf16 and dev.type == "cpu":
        for m in model.modules():
            if type(m) is nn.GroupNorm:
                m.__class__ = FP32GroupNorm
    model = model.to(dev)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    ema = [p.detach().clone() for p in params]
    b, sd, seen = a.batch, cp.SIGMA_DATA, [0]
    y = torch.rand(b, 1, 28, 28, device=dev) * 2 - 1

    def step():
        sigma = (torch.randn(b, device=dev) * 1.2 - 1.2).exp()
        n = torch.randn_like(y) * sigma.view(-1, 1, 1, 1)
        w = (sigma ** 2 + sd ** 2) / (sigma * sd) ** 2
        with torch.autocast(dev.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            d = model(y + n, sigma)
        loss = (w.view(-1, 1, 1, 1) * (d.float() - y) ** 2).sum() / b
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        beta = 0.5 ** (b / max(min(500_000.0, seen[0] * 0.05), 1e-8))  # diffuse's EmaHalfLife
        with torch.no_grad():
            torch._foreach_mul_(ema, beta)
            torch._foreach_add_(ema, params, alpha=1 - beta)
        seen[0] += b

    reset_peak(dev)
    for _ in range(a.train_warmup):
        step()
    vals = []
    for _ in range(a.train_steps // a.chunk):
        vals.append(a.chunk * b / timed(lambda: [step() for _ in range(a.chunk)], dev))
    label = {"fp32": "FP32", "bf16": "BF16 autocast", "tf32": "FP32, TF32 allowed"}[precision]
    r = row(f"training, batch {b}, {label}", "images/s", vals, 3 * fwd_flops, peak_mib(dev),
            warmup_steps=a.train_warmup, steps=a.train_steps, chunk=a.chunk)
    set_tf32(False)
    return r


def fmt(v):
    if v is None:
        return "-"
    d = 0 if v == 0 else min(4, max(0, 2 - math.floor(math.log10(abs(v)))))
    return f"{v:.{d}f}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: only to test the script (--quick)")
    p.add_argument("--quick", action="store_true", help="smoke test: every count shrunk (figures mean nothing)")
    p.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    p.add_argument("--compile-budget", type=float, default=90.0,
                   help="skip the compiled batch-1 row when compiling for 16 images took longer (s, default 90)")
    p.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    p.add_argument("--sample-runs", type=int, default=10)
    p.add_argument("--sample-warmup", type=int, default=3)
    p.add_argument("--fwd-calls", type=int, default=200)
    p.add_argument("--fwd-warmup", type=int, default=20)
    p.add_argument("--train-warmup", type=int, default=60)
    p.add_argument("--train-steps", type=int, default=100)
    p.add_argument("--chunk", type=int, default=20, help="training steps per timed chunk (default 20)")
    p.add_argument("--matmul-n", type=int, default=8192)
    a = p.parse_args()
    a.images, a.batch, a.matmul_reps = cp.SAMPLE_IMAGES, cp.TRAIN_BATCH, 10
    if a.quick:
        a.images, a.batch, a.matmul_n, a.matmul_reps = 4, 16, 512, 2
        a.sample_runs, a.sample_warmup, a.fwd_calls, a.fwd_warmup = 2, 1, 5, 2
        a.train_warmup, a.train_steps, a.chunk = 2, 4, 2
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_pytorch: CUDA is not available (use --device cpu --quick to test the script)")
    torch.backends.cudnn.benchmark = a.cudnn_benchmark
    started = time.time()

    machine = {"torch": torch.__version__, "device": "cpu", "cuda": torch.version.cuda,
               "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None,
               "cudnn_benchmark": a.cudnn_benchmark}
    if dev.type == "cuda":
        prop = torch.cuda.get_device_properties(dev)
        machine.update(device=torch.cuda.get_device_name(dev), sm_count=prop.multi_processor_count,
                       memory_gib=prop.total_memory / 2 ** 30, capability=f"{prop.major}.{prop.minor}")
    machine["matmul_n"] = a.matmul_n
    machine["peak_tflops"] = matmul_peak(dev, a.matmul_n, a.matmul_reps)
    flops, params = cp.count_flops()
    fwd_flops = sum(flops.values())

    rows = bench_inference(a, dev, fwd_flops)
    for precision in ("fp32", "bf16", "tf32"):
        try:
            rows.append(bench_train(a, dev, precision, fwd_flops))
        except Exception as e:
            rows.append({"name": f"training, {precision}", "error": failure(e)})
        finally:
            set_tf32(False)

    pk = machine["peak_tflops"]
    print(f"## edm-mnist-small, PyTorch on {machine['device']}" + (" (--quick: figures mean nothing)" if a.quick else ""))
    print()
    print(f"torch {machine['torch']}, CUDA {machine['cuda']}, cuDNN {machine['cudnn']}"
          + (f", {machine['sm_count']} SMs, {machine['memory_gib']:.0f} GiB, compute capability {machine['capability']}"
             if dev.type == "cuda" else "") + f", cudnn.benchmark {a.cudnn_benchmark}  ")
    print(f"matmul peak ({a.matmul_n}^3, measured): " + ", ".join(f"{k.upper()} {fmt(v)} TFLOP/s" for k, v in pk.items()) + "  ")
    print(f"model: {params} parameters, forward {fwd_flops / 1e9:.3f} GFLOP per image, training step 3 x forward  ")
    print(f"sampling: {a.sample_warmup} warm-up + {a.sample_runs} timed runs; batch 1: {a.fwd_warmup} warm-up + "
          f"{a.fwd_calls} timed calls; training: {a.train_warmup} warm-up + {a.train_steps} timed steps "
          f"in chunks of {a.chunk}")
    print()
    print("| row | median | (min .. max) | TFLOP/s | % FP32 peak | peak memory MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['name']} | {r['error']} | | | | |")
            continue
        pct = f"{100 * r['tflops'] / pk['fp32']:.1f}%" if r.get("tflops") and pk.get("fp32") else "-"
        print(f"| {r['name']}, {r['unit']} | {fmt(r['median'])} | ({fmt(r['min'])} .. {fmt(r['max'])}) | "
              f"{fmt(r.get('tflops'))} | {pct} | {fmt(r['peak_mem_mib'])} |")
    print()
    for r in rows:
        if "compile_s" in r:
            print(f"torch.compile, {r['name']}: first call (compiling) {r['compile_s']:.1f} s  ")
    total = time.time() - started
    print(f"(ran {total:.0f} s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": machine, "model": {"params": params, "forward_flops_per_image": fwd_flops,
                                                     "flops": flops}, "rows": rows, "quick": a.quick,
                       "total_s": total}, f, indent=1)


if __name__ == "__main__":
    main()
