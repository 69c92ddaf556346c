#!/usr/bin/python3
"""edm-mnist-small side by side: diffuse against PyTorch (and ONNX Runtime) on the same CPU.

One command measures, in FP32 and in BF16, for diffuse (bench_models), PyTorch's twin of the
network (tests/fixtures/make_fixtures.py builds the same UNet, layer for layer) in NCHW and
in channels_last, and, where onnxruntime-node can be loaded from node, ONNX Runtime (FP32
inference only):
  * training throughput: images/s of full steps (forward, EDM loss, backward, AdamW) at
    batch 128, at steady state;
  * sampling: seconds for 16 images with the 18-step EDM Heun sampler (35 evaluations);
  * forward latency: one denoiser evaluation D(x; sigma) (preconditioning included) at
    batch 1 and at batch 16, in ms;
  * the peak resident memory of each process (every measurement runs in a fresh process,
    started by a parent that never imports torch: a forked child starts with its parent's
    resident size as its ru_maxrss).

All measurements are interleaved: in each of `--rounds` rounds every system runs every row
once (the order of the systems rotates from round to round); the table gives medians and
(min .. max) ranges, with for each diffuse row the ratio against the faster PyTorch layout
(>1: diffuse faster; PyTorch time / diffuse time for times) and the share of the FP32 FMA
peak of this CPU that diffuse reaches.

The header names the machine: the CPU (/proc/cpuinfo, lscpu), the instruction set diffuse
was built for (diffuse-sample --info), the FP32 (and BF16) FMA peak measured in every round by
bench_kernels' BM_Peak rows at --threads threads (median over the rounds), PyTorch's build,
and the FLOPs per image: the multiply-adds of every Conv2d, Linear and of the two attention
matmuls, counted once on PyTorch's twin with forward hooks; forward = 2 MACs, a training step
= 3 x forward, element-wise work (GroupNorm, SiLU, softmax, AdamW) not counted.

How each side is measured:
  * diffuse: bench_models, one process per row, JSON output. Its rows set their own minimum
    time (MinTime 5 s for training and Heun, 2 s for D(x; sigma)), which in Google Benchmark
    1.7 takes precedence over --benchmark_min_time, so none is passed. Every run of a row
    first sizes its buffers (training: one untimed step). Training at steady state: the row
    runs with --benchmark_repetitions=R, R chosen (from the previous round's step time, in the
    first round from this round's Heun time) so that the repetitions before the last ones
    hold at least --train-warmup steps and the last ones at least --train-steps steps; images/s
    is taken over those last repetitions only. The steps actually used are printed below the
    table. A row that cannot run (BF16 where the CPU lacks it) is printed as skipped, with
    Google Benchmark's error message.
  * PyTorch (Debian's python3-torch): torch.set_num_threads(--threads), OMP_NUM_THREADS
    likewise, OpenBLAS single-threaded (OPENBLAS_NUM_THREADS=1; OPENBLAS_CORETYPE=SkylakeX on
    AVX-512 CPUs unless set: Debian's OpenBLAS 0.3.21 takes some of them for SSE3 ones),
    oneDNN convolutions in NCHW and channels_last; inference under torch.inference_mode().
    Training: --train-warmup steps (PyTorch speeds up over its first 50-100 steps), then
    --train-steps timed steps. Heun: one untimed sample, then samples for at least
    --sample-time seconds (at least one). D(x; sigma): at least 10 calls and --fwd-time / 2
    seconds untimed, then calls for at least --fwd-time seconds. BF16: torch.autocast("cpu",
    dtype=torch.bfloat16), with the GroupNorm modules kept in FP32 (their forward casts the
    input to float32 and runs with autocast off, as CUDA autocast does: torch 1.13's CPU
    autocast fails inside GroupNorm on BF16 inputs); the loss and AdamW stay in FP32.
  * ONNX Runtime: the FP32 denoiser (preconditioning included) exported with
    torch.onnx.export (opset 17, dynamic batch) to a temporary file and timed from a small node
    script (intraOpNumThreads = --threads, sequential execution, all graph optimisations)
    like PyTorch's inference rows. Looked for in $ORT_NODE_DIR (the package directory or one
    that holds node_modules/onnxruntime-node) and in node_modules/ under the repository root;
    without it one line says it was skipped. Nothing is installed by this script.

Run from the repository root with a release build. With the defaults a round takes about
15 minutes on an idle 2-core Xeon (family 6 model 207, KVM guest), three quarters of it the 80 training
steps of each system and precision, so about 45 minutes in all; --quick takes about 3 minutes.

  /usr/bin/python3 benchmarks/models/compare_pytorch.py                # 3 rounds, FP32 + BF16
  /usr/bin/python3 benchmarks/models/compare_pytorch.py --quick        # smoke test (figures mean nothing)
  /usr/bin/python3 benchmarks/models/compare_pytorch.py --precision fp32 --layout channels_last --rounds 5

Needs Debian's python3-torch and libopenblas0-pthread (not needed for the build or the tests);
standard library and torch only.
"""
import argparse
import contextlib
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))

TRAIN_BATCH, SAMPLE_IMAGES, HEUN_STEPS = 128, 16, 18
HEUN_EVALS = 2 * HEUN_STEPS - 1
SIGMA_DATA = 0.5

# (kind, batch): the rows of the table, in the order they run within a round
ROWS = [("fwd", 1), ("fwd", 16), ("sample", SAMPLE_IMAGES), ("train", TRAIN_BATCH)]
ROW_LABEL = {("fwd", 1): "D(x; sigma), batch 1, ms", ("fwd", 16): "D(x; sigma), batch 16, ms",
             ("sample", SAMPLE_IMAGES): f"Heun-{HEUN_STEPS}, {SAMPLE_IMAGES} images, s",
             ("train", TRAIN_BATCH): f"training, batch {TRAIN_BATCH}, images/s"}
DIFFUSE_ROW = {"fwd": "BM_Denoise_EdmMnistSmall/{b}/{p}/", "sample": "BM_HeunSample_EdmMnistSmall/{b}/{p}/",
               "train": "BM_TrainStep_EdmMnistSmall/{b}/{p}/"}
TIME_UNIT_S = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


# ---------------------------------------------------------------- PyTorch (child process)

def torch_child(a):
    """One PyTorch measurement in a fresh process: prints a JSON object."""
    import torch
    import torch.nn as nn
    import make_fixtures as mf

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    fmt = torch.channels_last if a.layout == "channels_last" else torch.contiguous_format
    net = mf.UNet(mf.EDM_MNIST_SMALL)
    bf16 = a.precision == "bf16"
    if bf16:
        class FP32GroupNorm(nn.GroupNorm):
            def forward(self, x):
                with torch.autocast("cpu", enabled=False):
                    return super().forward(x.float())

        for m in net.modules():
            if type(m) is nn.GroupNorm:
                m.__class__ = FP32GroupNorm
    net = net.to(memory_format=fmt)

    def cast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    sd = SIGMA_DATA

    def denoise(x, sigma):
        s = sigma.view(-1, 1, 1, 1)
        c_skip = sd ** 2 / (s ** 2 + sd ** 2)
        c_out = s * sd / (s ** 2 + sd ** 2).sqrt()
        c_in = 1 / (s ** 2 + sd ** 2).sqrt()
        return c_skip * x + c_out * net((c_in * x).contiguous(memory_format=fmt), sigma.log() / 4)

    extra = {}
    if a.child == "train":
        batch = a.batch
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.0)
        y = (torch.rand(batch, 1, 28, 28) * 2 - 1).contiguous(memory_format=fmt)

        def step():
            sigma = (torch.randn(batch) * 1.2 - 1.2).exp()
            n = torch.randn_like(y) * sigma.view(-1, 1, 1, 1)
            w = (sigma ** 2 + sd ** 2) / (sigma * sd) ** 2
            with cast():
                d = denoise(y + n, sigma)
            loss = (w.view(-1, 1, 1, 1) * (d.float() - y) ** 2).sum() / batch
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(a.train_warmup):
            step()
        t0 = time.perf_counter()
        for _ in range(a.train_steps):
            step()
        value = a.train_steps * batch / (time.perf_counter() - t0)
        extra = {"warmup_steps": a.train_warmup, "measured_steps": a.train_steps}
    elif a.child == "sample":
        n_img, smin, smax, rho = a.batch, 0.002, 80.0, 7.0
        i = torch.arange(HEUN_STEPS, dtype=torch.float64)
        t = (smax ** (1 / rho) + i / (HEUN_STEPS - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
        t = torch.cat([t, torch.zeros(1, dtype=torch.float64)])

        def sample():
            with torch.inference_mode(), cast():
                x = torch.randn(n_img, 1, 28, 28, dtype=torch.float32) * float(t[0])
                for k in range(HEUN_STEPS):
                    s, s_next = float(t[k]), float(t[k + 1])
                    d = (x - denoise(x, torch.full((n_img,), s))) / s
                    x_next = x + (s_next - s) * d
                    if s_next > 0:
                        d2 = (x_next - denoise(x_next, torch.full((n_img,), s_next))) / s_next
                        x_next = x + (s_next - s) * 0.5 * (d + d2)
                    x = x_next.float()
            return x

        sample()  # warm-up
        runs, t0 = 0, time.perf_counter()
        while runs < 1 or time.perf_counter() - t0 < a.sample_time:
            sample()
            runs += 1
        value = (time.perf_counter() - t0) / runs
        extra = {"runs": runs}
    else:  # fwd
        x = torch.randn(a.batch, 1, 28, 28).contiguous(memory_format=fmt)
        sigma = torch.full((a.batch,), 1.0)
        with torch.inference_mode(), cast():
            calls, t0 = 0, time.perf_counter()
            while calls < 10 or time.perf_counter() - t0 < a.fwd_time / 2:
                denoise(x, sigma)
                calls += 1
            calls, t0 = 0, time.perf_counter()
            while calls < 3 or time.perf_counter() - t0 < a.fwd_time:
                denoise(x, sigma)
                calls += 1
            value = (time.perf_counter() - t0) / calls * 1e3
        extra = {"runs": calls}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps(dict(value=value, peak_rss_mib=rss, **extra)))


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def torch_env(threads):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS=str(threads))
    if "OPENBLAS_CORETYPE" not in env and "avx512f" in cpu_flags():
        env["OPENBLAS_CORETYPE"] = "SkylakeX"
    return env


def run_torch(kind, batch, precision, layout, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, "--batch", str(batch), "--precision", precision,
           "--layout", layout, "--threads", str(args.threads), "--train-warmup", str(args.train_warmup),
           "--train-steps", str(args.train_steps), "--fwd-time", str(args.fwd_time),
           "--sample-time", str(args.sample_time)]
    out = subprocess.run(cmd, env=torch_env(args.threads), capture_output=True, text=True)
    if out.returncode != 0:
        lines = [l for l in out.stderr.strip().splitlines() if l.strip()]
        return {"error": "failed: " + (lines[-1] if lines else f"exit status {out.returncode}")}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- diffuse

def gb_json(text):
    """The JSON document in a Google Benchmark program's stdout (which may print lines before it)."""
    m = re.search(r"^\{", text, re.M)
    if not m:
        raise ValueError("no JSON in the output")
    return json.JSONDecoder().raw_decode(text[m.start():])[0]


def diffuse_rows(bench):
    try:
        out = subprocess.run([bench, "--benchmark_list_tests"], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"compare_pytorch: {bench}: {e} (build it: cmake --build build/release; or pass --bench)")
    return out.stdout.split()


def diffuse_name(names, kind, batch, precision):
    prefix = DIFFUSE_ROW[kind].format(b=batch, p=1 if precision == "bf16" else 0)
    for n in names:
        if n.startswith(prefix):
            return n
    sys.exit(f"compare_pytorch: no row {prefix}* in {' '.join(names)}")


def row_min_time(name):
    m = re.search(r"/min_time:([0-9.]+)", name)
    return float(m.group(1)) if m else 0.5


def gb_iterations(t, min_time):
    """The iteration count Google Benchmark 1.7 settles on for a row whose iteration takes t s."""
    iters = 1
    while True:
        secs = iters * t
        if secs >= min_time:
            return iters
        mult = min_time * 1.4 / max(secs, 1e-9) if secs / min_time > 0.1 else 10.0
        iters = max(int(round(mult * iters)), iters + 1)


def train_repetitions(step_s, min_time, warmup, steps):
    n = gb_iterations(step_s, min_time)
    return math.ceil(max(warmup - 1, 0) / (n + 1)) + math.ceil(steps / n)


def run_diffuse(name, kind, batch, args, repetitions=1):
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    cmd = [args.bench, "--benchmark_filter=^" + re.escape(name) + "$", "--benchmark_format=json"]
    if repetitions > 1:
        cmd.append(f"--benchmark_repetitions={repetitions}")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        lines = [l for l in out.stderr.strip().splitlines() if l.strip()]
        return {"error": "failed: " + (lines[-1] if lines else f"exit status {out.returncode}")}
    rows = gb_json(out.stdout)["benchmarks"]
    for b in rows:
        if b.get("error_occurred"):
            return {"error": "skipped: " + b.get("error_message", "error"), "skipped": True}
    reps = sorted((b for b in rows if b.get("run_type", "iteration") == "iteration"),
                  key=lambda b: b.get("repetition_index", 0))
    secs = [b["real_time"] * TIME_UNIT_S[b.get("time_unit", "ns")] for b in reps]
    iters = [b["iterations"] for b in reps]
    rss = max(b.get("peak_rss_MiB", 0.0) for b in reps)
    if kind != "train":
        value = secs[0] * 1e3 if kind == "fwd" else secs[0]
        return {"value": value, "peak_rss_mib": rss, "runs": iters[0]}
    # the last repetitions that hold --train-steps steps are measured; the ones before are warm-up
    k, measured = len(reps), 0
    while k > 0 and measured < args.train_steps:
        k -= 1
        measured += iters[k]
    warmup = sum(n + 1 for n in iters[:k]) + 1  # each run of the row first takes an untimed step
    total_s = sum(n * s for n, s in zip(iters[k:], secs[k:]))
    return {"value": measured * batch / total_s, "peak_rss_mib": rss, "step_s": total_s / measured,
            "warmup_steps": warmup, "measured_steps": measured, "repetitions": len(reps), "per_rep": iters[0]}


# ---------------------------------------------------------------- ONNX Runtime

NODE_SCRIPT = r"""
// Times the exported denoiser with onnxruntime-node: argv ortDir model kind batch threads seconds
const [ortDir, model, kind, batchS, threadsS, secondsS] = process.argv.slice(2);
const ort = require(ortDir);
const B = +batchS, N = B * 28 * 28, seconds = +secondsS;
let seed = 12345;
function uniform() { seed = (seed * 1103515245 + 12345) % 2147483648; return (seed + 0.5) / 2147483648; }
function randn(n, scale) {
  const a = new Float32Array(n);
  for (let i = 0; i < n; ++i) a[i] = scale * Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  return a;
}
const now = () => Number(process.hrtime.bigint()) / 1e9;
(async () => {
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: +threadsS, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all'});
  async function D(x, sigma) {
    const feeds = {x: new ort.Tensor('float32', x, [B, 1, 28, 28]),
                   sigma: new ort.Tensor('float32', new Float32Array(B).fill(sigma), [B])};
    const out = await session.run(feeds);
    return out[session.outputNames[0]].data;
  }
  const steps = 18, smin = 0.002, smax = 80, rho = 7, t = [];
  for (let i = 0; i < steps; ++i)
    t.push(Math.pow(Math.pow(smax, 1 / rho) + i / (steps - 1) * (Math.pow(smin, 1 / rho) - Math.pow(smax, 1 / rho)), rho));
  t.push(0);
  async function heun() {
    let x = randn(N, t[0]);
    for (let k = 0; k < steps; ++k) {
      const s = t[k], sn = t[k + 1];
      const den = await D(x, s), d = new Float32Array(N), xn = new Float32Array(N);
      for (let i = 0; i < N; ++i) { d[i] = (x[i] - den[i]) / s; xn[i] = x[i] + (sn - s) * d[i]; }
      if (sn > 0) {
        const den2 = await D(xn, sn);
        for (let i = 0; i < N; ++i) xn[i] = x[i] + (sn - s) * 0.5 * (d[i] + (xn[i] - den2[i]) / sn);
      }
      x = xn;
    }
    return x;
  }
  const x1 = randn(N, 1);
  const once = kind === 'fwd' ? () => D(x1, 1.0) : heun;
  const minWarm = kind === 'fwd' ? 10 : 1, minRuns = kind === 'fwd' ? 3 : 1;
  const warmS = kind === 'fwd' ? seconds / 2 : 0;
  let runs = 0, t0 = now();
  while (runs < minWarm || now() - t0 < warmS) { await once(); ++runs; }
  runs = 0; t0 = now();
  while (runs < minRuns || now() - t0 < seconds) { await once(); ++runs; }
  const per = (now() - t0) / runs;
  console.log(JSON.stringify({value: kind === 'fwd' ? per * 1e3 : per, peak_rss_mib: process.resourceUsage().maxRSS / 1024, runs}));
})().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
"""


def find_ort():
    """(node, onnxruntime-node directory) or (None, reason)."""
    node = shutil.which("node")
    if not node:
        return None, "node not found"
    candidates = []
    if os.environ.get("ORT_NODE_DIR"):
        d = os.environ["ORT_NODE_DIR"]
        candidates += [os.path.join(d, "node_modules", "onnxruntime-node"), d]
    candidates.append(os.path.join(ROOT, "node_modules", "onnxruntime-node"))
    for d in candidates:
        if os.path.isfile(os.path.join(d, "package.json")):
            ok = subprocess.run([node, "-e", f"require({json.dumps(os.path.abspath(d))})"], capture_output=True)
            if ok.returncode == 0:
                return node, os.path.abspath(d)
    return None, "onnxruntime-node not found"


def export_onnx(path):
    import torch
    import make_fixtures as mf

    class Denoiser(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mf.UNet(mf.EDM_MNIST_SMALL)

        def forward(self, x, sigma):
            sd, s = SIGMA_DATA, sigma.view(-1, 1, 1, 1)
            c_skip = sd ** 2 / (s ** 2 + sd ** 2)
            c_out = s * sd / (s ** 2 + sd ** 2).sqrt()
            c_in = 1 / (s ** 2 + sd ** 2).sqrt()
            return c_skip * x + c_out * self.net(c_in * x, sigma.log() / 4)

    torch.manual_seed(0)
    model = Denoiser().eval()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 1, 28, 28), torch.ones(2)), path, opset_version=17,
                          input_names=["x", "sigma"], output_names=["d"],
                          dynamic_axes={"x": {0: "n"}, "sigma": {0: "n"}, "d": {0: "n"}})


def run_ort(kind, batch, args, ort):
    seconds = args.fwd_time if kind == "fwd" else args.sample_time
    cmd = [ort["node"], ort["script"], ort["dir"], ort["model"], kind, str(batch), str(args.threads), str(seconds)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        lines = [l for l in out.stderr.strip().splitlines() if l.strip()]
        return {"error": "failed: " + (lines[0] if lines else f"exit status {out.returncode}")}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- machine, peak, FLOPs

def machine_lines(args):
    model, info = "unknown CPU", {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                info[k.strip()] = v.strip()
    except OSError:
        pass
    parts = [model]
    if "Model" in info and "CPU family" in info:
        parts.append(f"family {info['CPU family']} model {info['Model']}")
    if "CPU(s)" in info:
        parts.append(f"{info['CPU(s)']} CPUs ({info.get('Core(s) per socket', '?')} cores/socket x "
                     f"{info.get('Socket(s)', '?')} sockets, {info.get('Thread(s) per core', '?')} threads/core)")
    for k in ("L2 cache", "L3 cache"):
        if k in info:
            parts.append(f"{k[:2]} {info[k]}")
    if info.get("Hypervisor vendor"):
        parts.append(f"{info['Hypervisor vendor']} guest")
    flags = cpu_flags()
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    if isa:
        parts.append("flags " + " ".join(isa))
    lines = ["CPU: " + ", ".join(parts)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    try:
        out = subprocess.run([args.sample_bin, "--info"], env=env, capture_output=True, text=True)
        for l in (out.stderr + out.stdout).strip().splitlines():
            lines.append("diffuse: " + l.strip())
    except OSError as e:
        lines.append(f"diffuse: {args.sample_bin} --info: {e}")
    return lines


def measure_peak(args):
    """(FP32 GFLOP/s, BF16 GFLOP/s, note) at --threads threads from bench_kernels' BM_Peak rows."""
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    try:
        out = subprocess.run([args.kernels_bench, "--benchmark_filter=BM_Peak", "--benchmark_format=json",
                              "--benchmark_min_time=0.2"], env=env, capture_output=True, text=True, check=True)
        rows = gb_json(out.stdout)["benchmarks"]
    except (OSError, subprocess.CalledProcessError, ValueError, KeyError) as e:
        return None, None, f" (not measured: {e})"
    res, note = [], ""
    for fam in ("BM_Peak", "BM_PeakBf16"):
        by_threads = {}
        for b in rows:
            m = re.match(fam + r"/(\d+)/", b["name"])
            if m and not b.get("error_occurred") and "GFLOPS" in b:
                by_threads[int(m.group(1))] = b["GFLOPS"]
        if args.threads in by_threads:
            res.append(by_threads[args.threads])
        elif by_threads:
            t = max(by_threads)
            res.append(by_threads[t] * args.threads / t)
            note = f" (scaled from the {t}-thread row)"
        else:
            res.append(None)
    return res[0], res[1], note


def count_flops():
    """Forward FLOPs per image (2 x multiply-adds of Conv2d, Linear and the attention matmuls)."""
    import torch
    import make_fixtures as mf

    net = mf.UNet(mf.EDM_MNIST_SMALL)
    macs = {"conv": 0, "linear": 0, "attention": 0}

    def conv(m, i, o):
        macs["conv"] += o.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m, i, o):
        macs["linear"] += o.numel() * m.in_features

    def attention(m, i, o):  # q^T k and a v: 2 x P x P x C per image
        n, c, h, w = i[0].shape
        macs["attention"] += 2 * n * (h * w) ** 2 * c

    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(conv)
        elif isinstance(m, torch.nn.Linear):
            m.register_forward_hook(linear)
        elif isinstance(m, mf.Attention):
            m.register_forward_hook(attention)
    with torch.no_grad():
        net(torch.zeros(1, 1, 28, 28), torch.zeros(1))
    params = sum(p.numel() for p in net.parameters())
    return {k: 2 * v for k, v in macs.items()}, params


def torch_info():
    import torch

    cfg = torch.__config__.show()
    onednn = re.search(r"MKL-DNN (v[0-9.]+)", cfg)
    capability = re.search(r"CPU capability usage: (\S+)", cfg)
    flops, params = count_flops()
    return {"torch": torch.__version__, "onednn": onednn.group(1) if onednn else "?",
            "capability": capability.group(1) if capability else "?", "flops": flops, "params": params}


# ---------------------------------------------------------------- report

def fmt(v):
    if v is None:
        return "—"
    d = 0 if v == 0 else min(3, max(0, 2 - math.floor(math.log10(abs(v)))))
    return f"{v:.{d}f}"


def cell(results):
    vals = [r["value"] for r in results if "value" in r]
    if not vals:
        errs = [r["error"] for r in results if "error" in r]
        return ("skipped" if errs and errs[0].startswith("skipped") else "failed") if errs else "—"
    med = statistics.median(vals)
    s = fmt(med)
    if len(vals) > 1:
        s += f" ({fmt(min(vals))} .. {fmt(max(vals))})"
    if len(vals) < len(results):
        s += f" [{len(results) - len(vals)} failed]"
    return s


def median_of(results):
    vals = [r["value"] for r in results if "value" in r]
    return statistics.median(vals) if vals else None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", default="build/release/benchmarks/models/bench_models", help="diffuse's bench_models")
    p.add_argument("--kernels-bench", default="build/release/benchmarks/kernels/bench_kernels",
                   help="bench_kernels, for the FMA peak (BM_Peak rows)")
    p.add_argument("--sample-bin", default="build/release/examples/diffuse-sample",
                   help="diffuse-sample, for --info (the instruction set diffuse was built for)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--threads", type=int, default=2, help="threads for every system (default 2)")
    p.add_argument("--train-warmup", type=int, default=60, help="training steps before the timed ones (default 60)")
    p.add_argument("--train-steps", type=int, default=20, help="timed training steps (default 20)")
    p.add_argument("--sample-time", type=float, default=5.0,
                   help="PyTorch/ORT: time Heun samples for at least this many seconds (default 5, as the bench row)")
    p.add_argument("--fwd-time", type=float, default=2.0,
                   help="PyTorch/ORT: time D(x; sigma) for at least this many seconds (default 2, as the bench row)")
    p.add_argument("--layout", choices=["nchw", "channels_last", "both"], default="both", help="PyTorch layouts")
    p.add_argument("--precision", choices=["fp32", "bf16", "both"], default="both")
    p.add_argument("--rows", default="fwd1,fwd16,sample,train",
                   help="rows to measure, comma-separated from fwd1, fwd16, sample, train (default all)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 round, warm-up 5, 3 steps, short PyTorch/ORT times (diffuse rows keep their own)")
    p.add_argument("--child", choices=["train", "sample", "fwd", "info", "export"], help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=TRAIN_BATCH, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child == "info":
        print(json.dumps(torch_info()))
        return
    if args.child == "export":
        export_onnx(args.out)
        return
    if args.child:
        args.precision = "bf16" if args.precision == "bf16" else "fp32"
        torch_child(args)
        return
    if args.quick:
        args.rounds, args.train_warmup, args.train_steps = 1, 5, 3
        args.sample_time, args.fwd_time = 0.0, 0.2
    row_names = {"fwd1": ("fwd", 1), "fwd16": ("fwd", 16), "sample": ("sample", SAMPLE_IMAGES),
                 "train": ("train", TRAIN_BATCH)}
    wanted = [w.strip() for w in args.rows.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in row_names]
    if unknown or not wanted:
        p.error(f"--rows: unknown row {', '.join(unknown) or '(none given)'}; expected a comma-separated list "
                f"from {', '.join(row_names)}")
    rows = [key for key in ROWS if key in {row_names[w] for w in wanted}]
    started = time.time()
    layouts = ["nchw", "channels_last"] if args.layout == "both" else [args.layout]
    precisions = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    names = diffuse_rows(args.bench)

    header = machine_lines(args)
    # torch is imported in child processes only: a child forked from a large parent starts with
    # the parent's resident size as its ru_maxrss, which would inflate every peak RSS measured
    info = json.loads(subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "info"], check=True,
                                     capture_output=True, text=True).stdout.strip().splitlines()[-1])
    tenv = torch_env(args.threads)
    header.append(f"PyTorch {info['torch']} (oneDNN {info['onednn']}, ATen CPU capability {info['capability']}), "
                  f"OPENBLAS_NUM_THREADS=1, OPENBLAS_CORETYPE={tenv.get('OPENBLAS_CORETYPE', '(unset)')}")
    flops, params = info["flops"], info["params"]
    fwd_flops = sum(flops.values())
    header.append(f"edm-mnist-small: {params} parameters; forward {fwd_flops / 1e9:.3f} GFLOP per image "
                  f"(conv {flops['conv'] / 1e9:.3f}, linear {flops['linear'] / 1e9:.4f}, attention "
                  f"{flops['attention'] / 1e9:.4f}; 2 x multiply-adds), training step 3 x forward = "
                  f"{3 * fwd_flops / 1e9:.3f} GFLOP per image")
    work = {("fwd", 1): fwd_flops, ("fwd", 16): 16 * fwd_flops,
            ("sample", SAMPLE_IMAGES): SAMPLE_IMAGES * HEUN_EVALS * fwd_flops,
            ("train", TRAIN_BATCH): 3 * fwd_flops}  # train: per image (value is images/s)

    node, ort_dir = find_ort()
    ort, ort_line = None, None
    tmp = tempfile.TemporaryDirectory(prefix="compare_pytorch_")
    if node:
        try:
            model = os.path.join(tmp.name, "edm_mnist_small.onnx")
            subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "export", "--out", model],
                           check=True, capture_output=True, text=True)
            script = os.path.join(tmp.name, "time_ort.js")
            with open(script, "w") as f:
                f.write(NODE_SCRIPT)
            ort = {"node": node, "dir": ort_dir, "model": model, "script": script}
            ver = subprocess.run([node, "-e", f"console.log(require({json.dumps(os.path.join(ort_dir, 'package.json'))}).version)"],
                                 capture_output=True, text=True).stdout.strip()
            ort_line = f"ONNX Runtime: onnxruntime-node {ver or '?'} ({ort_dir}), FP32, model exported with torch.onnx.export opset 17"
        except subprocess.CalledProcessError as e:
            lines = [l for l in (e.stderr or "").strip().splitlines() if l.strip()]
            ort_line = f"ONNX Runtime: skipped (export failed: {lines[-1] if lines else e})"
    else:
        ort_line = f"ONNX Runtime: skipped ({ort_dir}; npm install --ignore-scripts onnxruntime-node)"

    systems = ["diffuse"] + ["pytorch " + l for l in layouts] + (["ort"] if ort else [])
    results = {}  # (system, row, precision) -> [result per round]
    peaks, peaks_bf16, peak_note = [], [], ""
    skipped = {}  # (row, precision) -> message: diffuse rows that cannot run are not retried
    train_info = {}
    for r in range(args.rounds):
        fp, bp, peak_note = measure_peak(args)
        if fp:
            peaks.append(fp)
        if bp:
            peaks_bf16.append(bp)
        print(f"round {r + 1}/{args.rounds}: FP32 FMA peak {fmt(fp)} GFLOP/s at {args.threads} threads "
              f"[{time.time() - started:.0f} s]", file=sys.stderr)
        order = systems[r % len(systems):] + systems[:r % len(systems)]
        for key in rows:
            kind, batch = key
            for prec in precisions:
                for system in order:
                    if system == "ort" and (prec != "fp32" or kind == "train"):
                        continue
                    t0 = time.time()
                    if system == "diffuse":
                        if (key, prec) in skipped:
                            res = {"error": skipped[(key, prec)], "skipped": True}
                        else:
                            name = diffuse_name(names, kind, batch, prec)
                            reps = 1
                            if kind == "train":
                                prev = results.get(("diffuse", key, prec), [])
                                prev = [x for x in prev if "step_s" in x]
                                if prev:
                                    step_s = prev[-1]["step_s"]
                                else:  # from this round's Heun time: 35 x 16 image evaluations vs 3 x 128
                                    heun = [x for x in results.get(("diffuse", ("sample", SAMPLE_IMAGES), prec), [])
                                            if "value" in x]
                                    step_s = heun[-1]["value"] if heun else 1.0
                                reps = train_repetitions(step_s, row_min_time(name), args.train_warmup, args.train_steps)
                            res = run_diffuse(name, kind, batch, args, reps)
                            if res.get("skipped"):
                                skipped[(key, prec)] = res["error"]
                            if "warmup_steps" in res:
                                train_info[prec] = res
                    elif system == "ort":
                        res = run_ort(kind, batch, args, ort)
                    else:
                        res = run_torch(kind, batch, prec, system.split(" ", 1)[1], args)
                    results.setdefault((system, key, prec), []).append(res)
                    shown = fmt(res["value"]) if "value" in res else res["error"]
                    print(f"  {ROW_LABEL[key]} {prec}, {system}: {shown}"
                          + (f", peak RSS {res['peak_rss_mib']:.0f} MiB" if "value" in res else "")
                          + f" [{time.time() - t0:.0f} s]", file=sys.stderr)

    # ---------------------------------------------------------------- print
    peak = statistics.median(peaks) if peaks else None
    peak_bf16 = statistics.median(peaks_bf16) if peaks_bf16 else None
    rng = lambda v: f" ({fmt(min(v))} .. {fmt(max(v))})" if len(v) > 1 else ""
    print(f"## edm-mnist-small: diffuse vs PyTorch, {args.threads} threads, medians of {args.rounds} interleaved "
          f"round{'s' if args.rounds != 1 else ''} (min .. max)")
    print()
    for l in header:
        print(l + "  ")
    print(f"FMA peak at {args.threads} threads{peak_note}: FP32 {fmt(peak)} GFLOP/s{rng(peaks)}, "
          f"BF16 {fmt(peak_bf16)} GFLOP/s{rng(peaks_bf16)} (bench_kernels BM_Peak / BM_PeakBf16, every round)  ")
    print(ort_line + "  ")
    print(f"Training: PyTorch {args.train_warmup} warm-up + {args.train_steps} timed steps per process; diffuse "
          f"as below. Sampling and D(x; sigma): PyTorch/ORT timed for >= {args.sample_time:g} s / {args.fwd_time:g} s "
          f"after warm-up, diffuse's rows for their MinTime (5 s / 2 s).")
    print()
    cols = ["row", "diffuse"] + [f"PyTorch {'NCHW' if l == 'nchw' else l}" for l in layouts] + (["ONNX Runtime"] if ort else []) + \
           ["diffuse / PyTorch", "diffuse % FP32 peak", "peak RSS MiB (" + " / ".join(
               ["diffuse"] + [("NCHW" if l == "nchw" else "CL") for l in layouts] + (["ORT"] if ort else [])) + ")"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|")
    notes = []
    for key in rows:
        kind, _ = key
        for prec in precisions:
            row = [f"{ROW_LABEL[key]}, {prec.upper()}", cell(results[("diffuse", key, prec)])]
            for l in layouts:
                row.append(cell(results[("pytorch " + l, key, prec)]))
            has_ort = ort and ("ort", key, prec) in results
            if ort:
                row.append(cell(results[("ort", key, prec)]) if has_ort else "—")
            d = median_of(results[("diffuse", key, prec)])
            best, best_l = None, None
            for l in layouts:
                v = median_of(results[("pytorch " + l, key, prec)])
                if v is not None and (best is None or (v > best if kind == "train" else v < best)):
                    best, best_l = v, l
            if d is not None and best is not None:
                ratio = d / best if kind == "train" else best / d
                row.append(f"{ratio:.2f}x" + (f" (vs {'NCHW' if best_l == 'nchw' else 'CL'})" if len(layouts) > 1 else ""))
            else:
                row.append("—")
            if d is not None and peak:
                if kind == "train":
                    achieved = d * work[key]
                elif kind == "fwd":
                    achieved = work[key] / (d * 1e-3)
                else:
                    achieved = work[key] / d
                row.append(f"{100 * achieved / (peak * 1e9):.1f}%")
            else:
                row.append("—")
            rss = []
            for s in ["diffuse"] + ["pytorch " + l for l in layouts] + (["ort"] if ort else []):
                v = [x["peak_rss_mib"] for x in results.get((s, key, prec), []) if "peak_rss_mib" in x]
                rss.append(f"{max(v):.0f}" if v else "—")
            row.append(" / ".join(rss))
            print("| " + " | ".join(row) + " |")
            for s in systems:
                for x in results.get((s, key, prec), []):
                    if "error" in x:
                        msg = f"{ROW_LABEL[key]}, {prec.upper()}, {s}: {x['error']}"
                        if msg not in notes:
                            notes.append(msg)
    print()
    for prec in precisions:
        t = train_info.get(prec)
        if t:
            print(f"diffuse training {prec.upper()} (last round): {t['repetitions']} repetitions of {t['per_rep']} steps "
                  f"(Google Benchmark, MinTime {row_min_time(diffuse_name(names, 'train', TRAIN_BATCH, prec)):g} s); "
                  f"warm-up >= {t['warmup_steps']} steps (the untimed first step of each repetition counted), "
                  f"{t['measured_steps']} steps measured" +
                  ("" if t["warmup_steps"] >= args.train_warmup else f" -- fewer than --train-warmup {args.train_warmup}") +
                  ".  ")
    for n in notes:
        print("Note: " + n + "  ")
    print(f"\n(ran {time.time() - started:.0f} s)")
    tmp.cleanup()


if __name__ == "__main__":
    main()
