#!/usr/bin/python3
"""edm-mnist-small side by side: diffuse against PyTorch on the same CPU.

Runs, alternately and `--rounds` times each, PyTorch's twin of the reference model
(tests/fixtures/make_fixtures.py builds the same network, layer for layer) and diffuse's
bench_models program, and prints the medians and ranges of:
  * training throughput: images/s of full steps (forward, EDM loss, backward, AdamW) at
    batch 128, float32;
  * sampling latency: seconds for 16 images with the 18-step EDM Heun sampler (35
    network evaluations);
  * peak resident memory of each process.
PyTorch gets its best setup: torch.set_num_threads(threads), OpenBLAS (Debian's
libopenblas0-pthread as libblas.so.3) single-threaded for its matmuls, oneDNN convolutions
in NCHW and channels-last (both are reported). Debian's OpenBLAS 0.3.21 takes some AVX-512
CPUs for SSE3 ones: set OPENBLAS_CORETYPE=SkylakeX there (the environment is passed on).

  /usr/bin/python3 benchmarks/models/compare_pytorch.py --bench build/release/benchmarks/models/bench_models

Needs Debian's python3-torch (not needed for the build or the tests).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "fixtures"))


def torch_run(kind, threads, layout, steps, batch):
    """One measurement in a fresh process: prints a JSON object."""
    import torch
    import make_fixtures as mf

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    net = mf.UNet(mf.EDM_MNIST_SMALL).to(memory_format=fmt)
    sd = 0.5

    def denoise(x, sigma):
        s = sigma.view(-1, 1, 1, 1)
        c_skip = sd ** 2 / (s ** 2 + sd ** 2)
        c_out = s * sd / (s ** 2 + sd ** 2).sqrt()
        c_in = 1 / (s ** 2 + sd ** 2).sqrt()
        return c_skip * x + c_out * net((c_in * x).contiguous(memory_format=fmt), sigma.log() / 4)

    if kind == "train":
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.0)
        y = (torch.rand(batch, 1, 28, 28) * 2 - 1).contiguous(memory_format=fmt)

        def step():
            sigma = (torch.randn(batch) * 1.2 - 1.2).exp()
            n = torch.randn_like(y) * sigma.view(-1, 1, 1, 1)
            w = (sigma ** 2 + sd ** 2) / (sigma * sd) ** 2
            loss = (w.view(-1, 1, 1, 1) * (denoise(y + n, sigma) - y) ** 2).sum() / batch
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()  # warm-up
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        value = steps * batch / (time.perf_counter() - t0)
    else:
        n_img, n_steps, smin, smax, rho = 16, 18, 0.002, 80.0, 7.0
        i = torch.arange(n_steps, dtype=torch.float64)
        t = (smax ** (1 / rho) + i / (n_steps - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
        t = torch.cat([t, torch.zeros(1, dtype=torch.float64)])

        def sample():
            with torch.no_grad():
                x = torch.randn(n_img, 1, 28, 28, dtype=torch.float32) * float(t[0])
                for k in range(n_steps):
                    s, s_next = float(t[k]), float(t[k + 1])
                    d = (x - denoise(x, torch.full((n_img,), s))) / s
                    x_next = x + (s_next - s) * d
                    if s_next > 0:
                        d2 = (x_next - denoise(x_next, torch.full((n_img,), s_next))) / s_next
                        x_next = x + (s_next - s) * 0.5 * (d + d2)
                    x = x_next
            return x

        sample()  # warm-up
        t0 = time.perf_counter()
        sample()
        value = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"value": value, "peak_rss_mib": rss}))


def run_torch(kind, args, layout):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS=str(args.threads))
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--layout", layout, "--threads", str(args.threads),
                          "--train-steps", str(args.train_steps)], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_diffuse(kind, args):
    name = "BM_TrainStep_EdmMnistSmall" if kind == "train" else "BM_HeunSample_EdmMnistSmall"
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    out = subprocess.run([args.bench, f"--benchmark_filter={name}", "--benchmark_format=json",
                          "--benchmark_min_time=0.1"], env=env, check=True, capture_output=True, text=True)
    b = json.loads(out.stdout)["benchmarks"][0]
    value = b["images/s"] if kind == "train" else b["real_time"]  # seconds (kSecond unit)
    return {"value": value, "peak_rss_mib": b["peak_rss_MiB"]}


def summary(values):
    return f"{statistics.median(values):8.2f}  ({min(values):.2f} .. {max(values):.2f})"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", default="build/release/benchmarks/models/bench_models")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-steps", type=int, default=5)
    p.add_argument("--layout", choices=["nchw", "channels_last", "both"], default="both")
    p.add_argument("--child", choices=["train", "sample"])
    args = p.parse_args()
    if args.child:
        torch_run(args.child, args.threads, args.layout, args.train_steps, 128)
        return
    layouts = ["nchw", "channels_last"] if args.layout == "both" else [args.layout]
    results = {}
    for r in range(args.rounds):
        for kind in ("train", "sample"):
            for layout in layouts:
                results.setdefault(("pytorch " + layout, kind), []).append(run_torch(kind, args, layout))
            results.setdefault(("diffuse", kind), []).append(run_diffuse(kind, args))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"edm-mnist-small, {args.threads} threads, medians of {args.rounds} interleaved rounds (range)")
    print(f"{'system':24} {'train images/s':>28} {'sample 16 images, s':>28} {'peak RSS MiB':>14}")
    for system in ["diffuse"] + ["pytorch " + l for l in layouts]:
        tr = [x["value"] for x in results[(system, "train")]]
        sa = [x["value"] for x in results[(system, "sample")]]
        rss = max(x["peak_rss_mib"] for k in ("train", "sample") for x in results[(system, k)])
        print(f"{system:24} {summary(tr):>28} {summary(sa):>28} {rss:14.0f}")


if __name__ == "__main__":
    main()
