#!/bin/bash
# Runs bench_kernels in pieces (GEMM + OpenBLAS, then each convolution's three passes), each
# piece starting only when the machine is quiet (at most QUIET running tasks in
# /proc/loadavg, this script included), so that timings on a shared 2-core machine are
# comparable. Every piece measures the FMA peak next to its own kernels.
#   usage: [BENCH_ARGS=--cpu_time] run_quiet.sh BENCH_BINARY OUT_DIR [THREADS]
#   (then bench_table.py OUT_DIR/*.json)
set -u
bench=$1; out=$2; threads=${3:-2}; quiet=${QUIET:-2}
mkdir -p "$out"
wait_quiet() {
  for _ in $(seq 1 "${WAIT_TRIES:-30}"); do
    local running; running=$(cut -d' ' -f4 /proc/loadavg | cut -d/ -f1)
    [ "$running" -le "$quiet" ] && return 0
    sleep 2
  done
}
pieces=("BM_Gemm|BM_OpenBLAS")
for c in 3x3_32-32_28 3x3_64-64_14 3x3_64-64_7 3x3_32-64_14 3x3_96-32_28 3x3_128-64_14 \
         3x3s2_32_28-14 3x3s2_64_14-7 1x1_96-32_28 1x1_128-64_14 1x1_96-64_14 1x1_128-64_7; do
  pieces+=("BM_Conv/$c/.*/threads:$threads")
done
pieces+=("BM_Upsample")
i=0
for f in "${pieces[@]}"; do
  wait_quiet
  echo "$(date -u +%T) load $(cut -d' ' -f1-4 /proc/loadavg): $f"
  # shellcheck disable=SC2086
  OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=2 "$bench" ${BENCH_ARGS:-} --benchmark_filter="^BM_Peak|$f" \
    --benchmark_repetitions=5 --benchmark_display_aggregates_only=true \
    --benchmark_out="$out/piece_$(printf %02d $i).json" --benchmark_out_format=json > /dev/null 2>&1
  i=$((i + 1))
done
