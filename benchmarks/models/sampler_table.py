#!/usr/bin/python3
"""Every sampler of diffuse-sample at about 10, 18 and 35 denoiser evaluations per image:
the Fréchet distance of its images (diffuse-eval fd against a reference set) and the
sampling time per image.

For a sampler with one evaluation per step the steps are the evaluations; for one with two
(one on the last step) they are (NFE + 1) / 2 rounded; dpm_adaptive chooses its own steps,
so it runs at a few tolerances (--adaptive-scales, times k-diffusion's rtol 0.05 and atol
0.0078) and its row gives the evaluations it needed. Every run draws the same images (seed,
count) from the same weights; the table gives the evaluations per image diffuse-sample
reports, the distance and the seconds per image (diffuse-sample's own timing, which leaves
out loading and writing files).

  /usr/bin/python3 benchmarks/models/sampler_table.py --checkpoint CKPT \\
      --classifier fashion-classifier.safetensors --work out/sampler-table

Stages whose result file exists in --work are not run again.
"""
import argparse
import os
import re
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
    a = ap.parse_args()
    sample = os.path.join(a.build, "examples", "diffuse-sample")
    evaluate = os.path.join(a.build, "examples", "diffuse-eval")
    os.makedirs(a.work, exist_ok=True)

    def measure(tag, options):
        result = os.path.join(a.work, tag + ".txt")
        if not os.path.exists(result):
            images = os.path.join(a.work, "images", tag)
            run = subprocess.run([sample, "--checkpoint", a.checkpoint, "--count", str(a.count), "--batch", "100",
                                  "--seed", str(a.seed), "--out", images] + options,
                                 capture_output=True, text=True, check=True)
            fd = subprocess.run([evaluate, "fd", "--classifier", a.classifier, "--reference", a.reference,
                                 "--images", images], capture_output=True, text=True, check=True).stdout
            with open(result, "w") as f:
                f.write(run.stderr + fd)
            subprocess.run(["rm", "-rf", images], check=True)
        text = open(result).read()
        m = re.search(r"image\(s\) in ([0-9.]+) s: .*?, ([0-9.]+) network evaluations per image", text)
        fd = float(re.search(r"frechet_distance\s+([0-9.eE+-]+)", text).group(1))
        seconds, nfe = float(m.group(1)), float(m.group(2))
        print(f"{tag}: NFE {nfe:g}, FD {fd:.3f}, {seconds / a.count * 1e3:.1f} ms per image", flush=True)
        return nfe, fd, seconds / a.count

    targets = [int(n) for n in a.nfe.split(",")]
    rows = []
    for name, calls in sampler_calls(sample):
        cells = []
        if name == "dpm_adaptive":
            for scale in (float(s) for s in a.adaptive_scales.split(",")):
                opts = ["--sampler", name, "--rtol", f"{0.05 * scale:g}", "--atol", f"{0.0078 * scale:g}"]
                cells.append(measure(f"{name}-tol{scale:g}", opts))
        else:
            for nfe in targets:
                steps = nfe if calls == 1 else round((nfe + 1) / 2)
                cells.append(measure(f"{name}-{steps}", ["--sampler", name, "--steps", str(steps)]))
        rows.append((name, cells))

    print("\n| sampler | " + " | ".join(f"NFE ~{n}: NFE, FD, ms/image" for n in targets) + " |")
    print("|---|" + "---|" * len(targets))
    for name, cells in rows:
        print(f"| `{name}` | " + " | ".join(f"{n:g}, **{fd:.2f}**, {t * 1e3:.1f}" for n, fd, t in cells) + " |")


if __name__ == "__main__":
    main()
