#!/usr/bin/python3
"""Every sampler of diffuse-sample at about 10, 18 and 35 denoiser evaluations per image:
the Fréchet distance of its images (diffuse-eval fd against a reference set) and the
sampling time per image.

For a sampler with one evaluation per step the steps are the evaluations; for one with two
(one on the last step) they are (NFE + 1) / 2 rounded; dpm_adaptive chooses its own steps,
so it runs at a few tolerances (--adaptive-scales, times k-diffusion's rtol 0.05 and atol
0.0078) and its row gives the evaluations it needed. Every run draws the same images (seed,
count) from the same weights; the table gives the evaluations per image diffuse-sample
reports, the distance and the milliseconds per image.

The times come from a second pass, so that the long distance pass can run on a busy machine:
every configuration samples --time-count images (one batch) once per round, the rounds
interleaved (--time-rounds), and the table gives the median and the range of the
milliseconds per image diffuse-sample reports (its own timing, which leaves out loading and
writing files). Run that pass on a quiet machine; --no-timing leaves it out.

  /usr/bin/python3 benchmarks/models/sampler_table.py --checkpoint CKPT \\
      --classifier fashion-classifier.safetensors --work out/sampler-table

Stages whose result file exists in --work are not run again.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FASHION = "/usr/share/datasets/fashion-mnist"


def sampler_calls(sample):
    """(name, calls per step) from diffuse-sample --help's sampler list: 1 or 2 (two-call samplers)."""
    text = subprocess.run([sample, "--help"], capture_output=True, text=True, check=True).stdout
    block = text.split("--sampler", 1)[1].split("--schedule", 1)[0]
    names = re.findall(r"^\s+([a-z0-9_]+): ", block, re.M)
    two = {"heun", "dpm_2", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde"}
    return [(n, 2 if n in two else 1) for n in names]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--classifier", required=True)
    ap.add_argument("--reference", default=f"{FASHION}/t10k-images-idx3-ubyte.gz")
    ap.add_argument("--work", required=True)
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--nfe", default="10,18,35")
    ap.add_argument("--adaptive-scales", default="4,1,0.25")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-count", type=int, default=100)
    ap.add_argument("--time-rounds", type=int, default=3)
    ap.add_argument("--no-timing", action="store_true")
    a = ap.parse_args()
    sample = os.path.join(a.build, "examples", "diffuse-sample")
    evaluate = os.path.join(a.build, "examples", "diffuse-eval")
    os.makedirs(a.work, exist_ok=True)

    def run_sample(count, batch, out, options):
        return subprocess.run([sample, "--checkpoint", a.checkpoint, "--count", str(count), "--batch", str(batch),
                               "--seed", str(a.seed), "--out", out] + options, capture_output=True, text=True, check=True)

    def measure(tag, options):
        result = os.path.join(a.work, tag + ".txt")
        if not os.path.exists(result):
            images = os.path.join(a.work, "images", tag)
            run = run_sample(a.count, 100, images, options)
            fd = subprocess.run([evaluate, "fd", "--classifier", a.classifier, "--reference", a.reference,
                                 "--images", images], capture_output=True, text=True, check=True).stdout
            with open(result, "w") as f:
                f.write(run.stderr + fd)
            subprocess.run(["rm", "-rf", images], check=True)
        text = open(result).read()
        m = re.search(r"([0-9.]+) network evaluations per image", text)
        fd = float(re.search(r"frechet_distance\s+([0-9.eE+-]+)", text).group(1))
        print(f"{tag}: NFE {float(m.group(1)):g}, FD {fd:.3f}", flush=True)
        return [float(m.group(1)), fd, []]

    def time_once(options):
        run = run_sample(a.time_count, a.time_count, os.path.join(a.work, "timing"), options)
        return float(re.search(r"image\(s\) in ([0-9.]+) s", run.stderr).group(1)) / a.time_count

    targets = [int(n) for n in a.nfe.split(",")]
    rows, configs = [], []
    for name, calls in sampler_calls(sample):
        cells = []
        if name == "dpm_adaptive":
            for scale in (float(s) for s in a.adaptive_scales.split(",")):
                opts = ["--sampler", name, "--rtol", f"{0.05 * scale:g}", "--atol", f"{0.0078 * scale:g}"]
                cells.append(measure(f"{name}-tol{scale:g}", opts))
                configs.append((cells[-1], opts))
        else:
            for nfe in targets:
                steps = nfe if calls == 1 else round((nfe + 1) / 2)
                opts = ["--sampler", name, "--steps", str(steps)]
                cells.append(measure(f"{name}-{steps}", opts))
                configs.append((cells[-1], opts))
        rows.append((name, cells))
    if not a.no_timing:
        for r in range(a.time_rounds):
            for cell, opts in configs:
                cell[2].append(time_once(opts))
            print(f"timing round {r + 1} of {a.time_rounds} done", flush=True)

    def ms(times):
        if not times:
            return "-"
        t = sorted(x * 1e3 for x in times)
        return f"{statistics.median(t):.1f} ({t[0]:.1f}-{t[-1]:.1f})"

    print(f"\nFréchet distance of {a.count} images; ms per image: median (range) of {a.time_rounds} rounds of "
          f"{a.time_count} images")
    print("\n| sampler | " + " | ".join(f"NFE ~{n}: NFE, FD, ms/image" for n in targets) + " |")
    print("|---|" + "---|" * len(targets))
    for name, cells in rows:
        print(f"| `{name}` | " + " | ".join(f"{n:g}, **{fd:.2f}**, {ms(t)}" for n, fd, t in cells) + " |")


if __name__ == "__main__":
    main()
