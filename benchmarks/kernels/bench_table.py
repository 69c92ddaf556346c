#!/usr/bin/env python3
"""Turns bench_kernels JSON output (one or more files, from runs with
--benchmark_repetitions and --benchmark_out_format=json, e.g. the pieces of run_quiet.sh)
into the markdown tables of docs/performance.md: median GFLOP/s with the min..max range over
all repetitions, and the fraction of the FMA peak (median of every BM_Peak repetition)."""
import json
import re
import statistics
import sys
from collections import defaultdict

runs = defaultdict(list)
# Fraction of peak per benchmark, against the BM_Peak measured in the same file (piece),
# since the share of the machine this process gets changes from piece to piece.
frac = defaultdict(list)
for path in sys.argv[1:]:
    local = defaultdict(list)
    for b in json.load(open(path))["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        name = b["run_name"] if "run_name" in b else b["name"]
        name = re.sub(r"/(real_time|process_time)$", "", name)
        val = b.get("GFLOPS", b.get("GB/s"))
        if val is not None:
            runs[name].append(val)
            local[name].append(val)
    for name, v in local.items():
        m = re.search(r"threads:(\d)$", name) or re.match(r"BM_(?:Gemm|OpenBLAS_Sgemm)/\d+/(\d)$", name)
        if m and local.get(f"BM_Peak/{m.group(1)}"):
            frac[name].append(statistics.median(v) / statistics.median(local[f"BM_Peak/{m.group(1)}"]))

def med(name):
    v = runs.get(name)
    if not v:
        return None
    return statistics.median(v), min(v), max(v)

def fmt(m):
    return "n/a" if m is None else f"{m[0]:.0f} ({m[1]:.0f}..{m[2]:.0f})"

peak1, peak2 = med("BM_Peak/1"), med("BM_Peak/2")
print(f"FMA peak (median of repetitions): 1 thread {fmt(peak1)}, 2 threads {fmt(peak2)} GFLOP/s\n")
p2 = peak2[0] if peak2 else float("nan")
p1 = peak1[0] if peak1 else float("nan")

print("| GEMM n x n x n | threads | diffuse GFLOP/s | % of peak | OpenBLAS GFLOP/s | diffuse / OpenBLAS |")
print("|---|---|---|---|---|---|")
for n in (256, 512, 1024, 2048):
    for t in (1, 2):
        d, o = med(f"BM_Gemm/{n}/{t}"), med(f"BM_OpenBLAS_Sgemm/{n}/{t}")
        pk = p1 if t == 1 else p2
        ratio = f"{d[0] / o[0]:.2f}" if d and o else "n/a"
        f = frac.get(f"BM_Gemm/{n}/{t}")
        pct = f"{100 * statistics.median(f):.0f} %" if f else "n/a"
        print(f"| {n} | {t} | {fmt(d)} | {pct} | {fmt(o)} | {ratio} |")

print()
convs = sorted({m.group(1) for k in runs for m in [re.match(r"BM_Conv/([^/]+)/", k)] if m},
               key=lambda s: list(runs).index(next(k for k in runs if k.startswith("BM_Conv/" + s + "/"))))
for t in (2, 1):
    if not any(k.endswith(f"threads:{t}") and k.startswith("BM_Conv") for k in runs):
        continue
    pk = p1 if t == 1 else p2
    print(f"Convolutions, batch 128, {t} thread{'s' if t > 1 else ''} (GFLOP/s median (range); % of the {t}-thread peak measured next to it):\n")
    print("| conv | forward | % | backward input | % | backward weight | % | all three |")
    print("|---|---|---|---|---|---|---|---|")
    for c in convs:
        cells, times = [], []
        for p in ("fwd", "bwd_input", "bwd_weight"):
            m = med(f"BM_Conv/{c}/{p}/threads:{t}")
            f = frac.get(f"BM_Conv/{c}/{p}/threads:{t}")
            cells += [fmt(m), f"{100 * statistics.median(f):.0f} %" if f else "n/a"]
            times.append(1.0 / m[0] if m else float("nan"))
        # All three passes together, counted as 3x forward FLOPs (the oneDNN comparison).
        cells.append(f"{3.0 / sum(times):.0f}")
        print(f"| {c} | " + " | ".join(cells) + " |")
    print()
for k in runs:
    if k.startswith("BM_Upsample"):
        print(f"{k}: {fmt(med(k))} GB/s")
