#!/usr/bin/python3
"""Quality at equal steps: edm-mnist-small trained by diffuse and by PyTorch, the same run.

Both sides train the unconditional edm-mnist-small on Fashion-MNIST at batch 128 with
diffuse-train's defaults (EDM loss P_mean -1.2, P_std 1.2, sigma_data 0.5; AdamW lr 1e-3,
betas (0.9, 0.999), eps 1e-8, no weight decay, linear warm-up over 100 steps; no gradient
clipping) and, so that the runs differ only by the implementation:
  * the same initial weights (benchmarks/models/initial_weights writes diffuse-train's start);
  * the same data order: diffuse's per-epoch Fisher-Yates shuffle, drawn here from the same
    Philox4x32-10 stream (include/diffuse/core/random.hpp: stream 2^62 | epoch, one block per
    swap, its first two words as a 64-bit number modulo i + 1);
  * the same sigma and noise per image: Generator(seed, image slot, step << 32), one block for
    ln sigma ~ N(P_mean, P_std^2) (Box-Muller on its first two words), then the image's normals
    (diffusion/noise.hpp, draw_training_noise);
  * the same averages: EDM's half-life EMA (500,000 images, ramp-up ratio 0.05: diffuse-train's
    default, the weights diffuse-sample uses) and EDM2's power-function EMA of sigma_rel 0.10
    (optim/power_ema.hpp; diffuse-train keeps it in every checkpoint and writes it every
    --ema-snapshot-every steps).
PyTorch runs the twin of tests/fixtures/make_fixtures.py with torch.optim.AdamW, in float32.

Then every set of weights, both sides', is sampled by diffuse-sample (1000 images, 18-step
EDM Heun, the same seeds) and measured by diffuse-eval fd (the Fréchet distance in the
features of diffuse's Fashion-MNIST classifier against the 10,000 test images; made first
with diffuse-eval classifier when --classifier does not exist). The noise of the measure:
the same weights sampled with a second seed (--noise-seeds).

Stages whose files exist in --work are not run again, so an interrupted run continues.
Run from the repository root with a release build and Debian's torch:
  /usr/bin/python3 benchmarks/models/parity_pytorch.py --work out/parity
About an hour on a 2-core machine: diffuse's 1200 steps (~20 min), PyTorch's (~30 min),
16 x 1000 samples (~25 min).
"""
import argparse
import gzip
import json
import math
import os
import re
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FASHION = "/usr/share/datasets/fashion-mnist"
EMAS = ("ema", "phema100")  # the half-life EMA and the power EMA of sigma_rel 0.10

# ---------------------------------------------------------------- diffuse's random numbers

sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
from diffuse_random import box_muller, normals, philox  # noqa: E402


def epoch_order(seed, epoch, n):
    """diffuse's shuffle_indices for epoch `epoch` (Trainer::shuffle_for)."""
    stream = (1 << 62) | epoch
    w0, w1, _, _ = philox(np.arange(n - 1, dtype=np.uint64), stream, seed)
    r = (w0 << np.uint64(32)) | w1
    order = list(range(n))
    for k, i in enumerate(range(n - 1, 0, -1)):
        j = int(r[k] % np.uint64(i + 1))
        order[i], order[j] = order[j], order[i]
    return np.array(order)


def training_noise(seed, step, batch, pixels, p_mean=-1.2, p_std=1.2):
    """sigma [batch] and unit noise [batch, pixels] of draw_training_noise, float32."""
    slots = np.arange(batch, dtype=np.uint64)
    first = step << 32  # slot b of step s: Generator(seed, b, s << 32), its sigma, then its noise
    w0, w1, _, _ = philox(np.uint64(first), slots, seed)
    sigma = np.exp(p_mean + p_std * box_muller(w0, w1)[0]).astype(np.float32)
    return sigma, normals(seed, slots, first + 1, pixels)


def read_idx_images(path):
    with gzip.open(path) if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    n, h, w = (int.from_bytes(data[4 + 4 * k:8 + 4 * k], "big") for k in range(3))
    pixels = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, h * w)
    return pixels.astype(np.float32) / np.float32(127.5) - np.float32(1.0)  # as io/idx.hpp


def power_ema_gamma(sigma_rel):
    """optim/power_ema.hpp's power_ema_gamma (bisection on EDM2 eq. 123)."""
    srel = lambda g: math.sqrt((g + 1) / ((g + 2) ** 2 * (g + 3)))
    lo, hi = 0.0, 1.0
    while srel(hi) > sigma_rel:
        hi *= 2
    for _ in range(200):
        if hi - lo <= 1e-14 * hi:
            break
        mid = 0.5 * (lo + hi)
        if srel(mid) > sigma_rel:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# ---------------------------------------------------------------- PyTorch's run

def torch_train(a, init, out_dir, stops):
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import torch
    sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
    import make_fixtures as mf

    torch.set_num_threads(a.threads)
    net = mf.UNet(mf.EDM_MNIST_SMALL)
    net.load_state_dict(mf.load_file(init), strict=True)
    params = list(net.parameters())
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    ema = [p.detach().clone() for p in params]
    gamma = power_ema_gamma(0.10)
    phema = [p.detach().clone() for p in params]
    data = read_idx_images(a.data)
    n, b, sd = data.shape[0], a.batch, 0.5
    per_epoch = n // b
    order, order_epoch = None, -1
    log = open(os.path.join(out_dir, "log.jsonl"), "w")
    t0 = time.perf_counter()
    for s in range(max(stops)):
        epoch, first = s // per_epoch, (s % per_epoch) * b
        if epoch != order_epoch:
            order, order_epoch = epoch_order(a.seed, epoch, n), epoch
        y = torch.from_numpy(data[order[first:first + b]]).reshape(b, 1, 28, 28)
        sigma_np, noise_np = training_noise(a.seed, s, b, 28 * 28)
        sigma = torch.from_numpy(sigma_np)
        noise = torch.from_numpy(noise_np).reshape(b, 1, 28, 28)
        sv = sigma.view(-1, 1, 1, 1)
        x = y + sv * noise
        c_skip = sd ** 2 / (sv ** 2 + sd ** 2)
        c_out = sv * sd / (sv ** 2 + sd ** 2).sqrt()
        c_in = 1 / (sv ** 2 + sd ** 2).sqrt()
        d = c_skip * x + c_out * net(c_in * x, sigma.log() / 4)
        w = (sigma ** 2 + sd ** 2) / (sigma * sd) ** 2
        loss = (w * ((d - y) ** 2).sum(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for g in opt.param_groups:  # the linear warm-up of diffuse's AdamW
            g["lr"] = a.lr * min(1.0, (s + 1) / a.warmup)
        opt.step()
        seen = s * b  # images before this step
        beta_ema = 0.5 ** (b / max(min(500_000.0, seen * 0.05), 1e-8))
        beta_ph = (1.0 - b / (seen + b)) ** (gamma + 1.0)
        with torch.no_grad():
            for p, e, ph in zip(params, ema, phema):
                e.copy_(p + float(beta_ema) * (e - p))
                ph.copy_(p + float(beta_ph) * (ph - p))
        grad_norm = math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in params))
        log.write(json.dumps({"step": s + 1, "loss": float(loss), "grad_norm": grad_norm}) + "\n")
        if (s + 1) % 50 == 0:
            log.flush()
            rate = (s + 1) * b / (time.perf_counter() - t0)
            print(f"pytorch step {s + 1} | loss {float(loss):.4f} | {rate:.1f} img/s", flush=True)
        if s + 1 in stops:
            names = [k for k, _ in net.named_parameters()]
            for kind, values in (("ema", ema), ("phema100", phema)):
                mf.save_file(dict(zip(names, values)), os.path.join(out_dir, f"{kind}-{s + 1}.safetensors"),
                             metadata={"diffuse.model": "edm-mnist-small"})
    log.close()


# ---------------------------------------------------------------- the driver

def run(cmd, **kw):
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="folder for every run's files (reused when run again)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--data", default=f"{FASHION}/train-images-idx3-ubyte.gz")
    ap.add_argument("--steps", default="400,800,1200", help="steps at which both sides' weights are measured")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--count", type=int, default=1000, help="images sampled per set of weights")
    ap.add_argument("--classifier", help="diffuse-eval's feature network (default: WORK/classifier.safetensors)")
    ap.add_argument("--noise-seeds", type=int, default=1,
                    help="extra sample seeds for the last step's weights, the measure's noise")
    ap.add_argument("--stage", choices=["all", "torch-train"], default="all", help=argparse.SUPPRESS)
    a = ap.parse_args()
    stops = sorted(int(s) for s in a.steps.split(","))
    work = os.path.abspath(a.work)
    ex = lambda name: os.path.join(a.build, "examples", name)
    init = os.path.join(work, "init.safetensors")
    tdir, ddir = os.path.join(work, "pytorch"), os.path.join(work, "diffuse")
    os.makedirs(tdir, exist_ok=True)
    if a.stage == "torch-train":
        torch_train(a, init, tdir, stops)
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))

    if not os.path.exists(init):
        run([os.path.join(a.build, "benchmarks", "models", "initial_weights"), str(a.seed), init])
    # diffuse: one run, resumed at each stop (bit-identical to an uninterrupted one)
    for s in stops:
        ckpt = os.path.join(ddir, f"checkpoint-{s}.safetensors")
        if os.path.exists(ckpt):
            continue
        cmd = [ex("diffuse-train"), "--data", a.data, "--model", "edm-mnist-small", "--out", ddir, "--steps", str(s),
               "--batch", str(a.batch), "--lr", str(a.lr), "--warmup", str(a.warmup), "--seed", str(a.seed),
               "--sample-every", "0", "--checkpoint-every", "0", "--ema-snapshot-every", str(math.gcd(*stops)),
               "--log-every", "50", "--threads", str(a.threads)]
        if os.path.exists(os.path.join(ddir, "checkpoint.safetensors")):
            cmd.append("--resume")
        run(cmd, env=env)
        os.replace(os.path.join(ddir, "checkpoint.safetensors"), ckpt)
        # the next stage resumes from it
        subprocess.run(["cp", ckpt, os.path.join(ddir, "checkpoint.safetensors")], check=True)
    if not all(os.path.exists(os.path.join(tdir, f"{k}-{s}.safetensors")) for s in stops for k in EMAS):
        run([sys.executable, os.path.abspath(__file__), "--work", work, "--stage", "torch-train", "--steps", a.steps,
             "--batch", str(a.batch), "--lr", str(a.lr), "--warmup", str(a.warmup), "--seed", str(a.seed),
             "--threads", str(a.threads), "--data", a.data], env=env)

    classifier = a.classifier or os.path.join(work, "classifier.safetensors")
    if not os.path.exists(classifier):
        run([ex("diffuse-eval"), "classifier", "--data", f"{FASHION}/train-images-idx3-ubyte.gz",
             "--labels", f"{FASHION}/train-labels-idx1-ubyte.gz", "--test-data", f"{FASHION}/t10k-images-idx3-ubyte.gz",
             "--test-labels", f"{FASHION}/t10k-labels-idx1-ubyte.gz", "--out", classifier], env=env)

    def weights(system, kind, s):
        if system == "pytorch":
            return os.path.join(tdir, f"{kind}-{s}.safetensors")
        if kind == "ema":
            return os.path.join(ddir, f"checkpoint-{s}.safetensors")
        return os.path.join(ddir, "ema-snapshots", f"phema-{s * a.batch:012d}-0.100.safetensors")

    def frechet(system, kind, s, seed):
        tag = f"{system}-{kind}-{s}-seed{seed}"
        result = os.path.join(work, "fd", tag + ".txt")
        if not os.path.exists(result):
            images = os.path.join(work, "samples", tag)
            run([ex("diffuse-sample"), "--checkpoint", weights(system, kind, s), "--model", "edm-mnist-small",
                 "--count", str(a.count), "--batch", "100", "--steps", "18", "--seed", str(seed), "--out", images],
                env=env, stdout=subprocess.DEVNULL)
            out = run([ex("diffuse-eval"), "fd", "--classifier", classifier,
                       "--reference", f"{FASHION}/t10k-images-idx3-ubyte.gz", "--images", images],
                      env=env, capture_output=True, text=True).stdout
            os.makedirs(os.path.dirname(result), exist_ok=True)
            with open(result, "w") as f:
                f.write(out)
        m = re.search(r"frechet_distance\s+([0-9.eE+-]+)", open(result).read())
        return float(m.group(1))

    rows = []
    for s in stops:
        for kind in EMAS:
            rows.append((s, kind, frechet("diffuse", kind, s, 0), frechet("pytorch", kind, s, 0)))
    noise = {(sys_, kind): [frechet(sys_, kind, stops[-1], seed) for seed in range(a.noise_seeds + 1)]
             for sys_ in ("diffuse", "pytorch") for kind in EMAS}

    def losses(path, key="loss"):
        out = {}
        for line in open(path):
            r = json.loads(line)
            if key in r and "step" in r:
                out[r["step"]] = r[key]
        return out

    dl, tl = losses(os.path.join(ddir, "log.jsonl")), losses(os.path.join(tdir, "log.jsonl"))
    print("\nFréchet distance of 1000 samples (18-step Heun) to the Fashion-MNIST test set, diffuse's classifier")
    print("| steps | EMA | diffuse | PyTorch |")
    print("|---|---|---|---|")
    for s, kind, d, t in rows:
        name = "half-life (EDM, ramp-up 0.05)" if kind == "ema" else "power, sigma_rel 0.10 (EDM2)"
        print(f"| {s} | {name} | {d:.3f} | {t:.3f} |")
    print(f"\nthe measure's noise: step {stops[-1]} sampled with seeds 0..{a.noise_seeds}:")
    for (sys_, kind), v in noise.items():
        print(f"  {sys_:8s} {kind:9s} " + " ".join(f"{x:.3f}" for x in v))
    common = sorted(set(dl) & set(tl))
    if common:
        shown = [st for st in (1, 2, 10, 50, 100, 200, 300, 400, 600, 800, 1000, 1200) if st in dl and st in tl]
        print("\ntraining loss of the same batch (images, sigmas, noise) on both sides, and its relative difference:")
        for st in shown:
            print(f"  step {st:5d}: diffuse {dl[st]:10.4f}  PyTorch {tl[st]:10.4f}  {tl[st] / dl[st] - 1:+.1e}")
        tail = [st for st in common if st > stops[-1] - 200]
        if tail:
            print(f"  mean of the last {len(tail)} steps: diffuse {np.mean([dl[t] for t in tail]):.3f}, "
                  f"PyTorch {np.mean([tl[t] for t in tail]):.3f}")

if __name__ == "__main__":
    main()
