#!/usr/bin/env bash
# Measures the GPU path on a machine that has an NVIDIA GPU and driver but no offload
# compiler: build here, carry a bundle there, run it there.
#
#   benchmarks/models/gpu_bundle.sh pack BUNDLE [CHECKPOINT]   (here: builds what it packs
#       in the offload preset's folder, with the benchmarks switched on)
#   benchmarks/models/gpu_bundle.sh run BUNDLE OUT              (there, from the source root)
#
# The bundle holds the offload build's test programs, diffuse-sample, diffuse-train (with
# Fashion-MNIST's test images to time training steps on), device_sampling, offload_launch, an
# optional trained unconditional edm-mnist-small (model_ema.safetensors of diffuse-train), and every shared library they load, the C library and
# its loader included (so that the target's own system libraries do not matter) plus
# libgomp's nvptx plugin. Only the NVIDIA driver (libcuda) comes from the target.
set -euo pipefail
mode=${1:-}
bundle=${2:?usage: $0 pack BUNDLE [CHECKPOINT] | run BUNDLE OUT}

if [ "$mode" = pack ]; then
  build=build/offload
  cmake --preset offload -DDIFFUSE_BUILD_BENCHMARKS=ON >/dev/null
  cmake --build "$build" -j "$(nproc)" --target device_sampling diffuse-sample diffuse-train offload_launch \
    test_core test_data test_device test_diffusion test_kernels test_nn test_optim test_train
  mkdir -p "$bundle/lib"
  # The test programs (not the end-to-end training tests: they only time the CPU there).
  bins=("$build"/tests/*/test_* "$build/examples/diffuse-sample" "$build/examples/diffuse-train"
        "$build/benchmarks/models/device_sampling"
        "$build/benchmarks/kernels/offload_launch")
  for b in "${bins[@]}"; do
    [ -x "$b" ] && [ -f "$b" ] && [ "$(basename "$b")" != test_e2e ] || continue
    strip -o "$bundle/$(basename "$b")" "$b"
  done
  for b in "${bins[@]}"; do
    [ -x "$b" ] && [ -f "$b" ] || continue
    ldd "$b" | awk '/=> \//{print $3} /^[ \t]*\/lib/{print $1}'
  done | sort -u | while read -r lib; do cp -L "$lib" "$bundle/lib/"; done
  cp -L /usr/lib/x86_64-linux-gnu/libgomp-plugin-nvptx.so.1 "$bundle/lib/"
  images=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
  [ -f "$images" ] && cp "$images" "$bundle/train-images.idx.gz"
  [ -n "${3:-}" ] && cp "$3" "$bundle/checkpoint.safetensors"
  du -sh "$bundle"
  exit 0
fi

[ "$mode" = run ] || { echo "usage: $0 pack BUNDLE [CHECKPOINT] | run BUNDLE OUT" >&2; exit 2; }
out=${3:?usage: $0 run BUNDLE OUT}
mkdir -p "$out"
lib=$(cd "$bundle/lib" && pwd)
cuda=$(dirname "$(ldconfig -p | awk '/libcuda.so.1/{print $NF; exit}')")
runner=("$lib/ld-linux-x86-64.so.2" --library-path "$lib:$cuda")
run() { "${runner[@]}" "$@"; }
# The tests find their fixtures under the source root they were built in.
src=$(grep -ao '/[[:alnum:]_./-]*/tests/nn/\.\./fixtures' "$bundle/test_nn" | head -1 | sed 's|/tests/nn/\.\./fixtures$||' || true)
if [ -n "$src" ] && [ ! -e "$src" ]; then mkdir -p "$(dirname "$src")" && ln -s "$PWD" "$src"; fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
lscpu | grep -E "Model name|^CPU\(s\)" || true

echo "== device tests on the GPU"
timeout 120 "${runner[@]}" "$bundle/test_device" 2>&1 | tail -25

echo "== sampling, CPU and GPU interleaved"
checkpoint=()
[ -f "$bundle/checkpoint.safetensors" ] && checkpoint=(--checkpoint "$bundle/checkpoint.safetensors")
timeout 240 "${runner[@]}" "$bundle/device_sampling" --rounds 5 "${checkpoint[@]}" 2>&1 | tee "$out/device_sampling.txt"

echo "== kernel start-up and loop forms (benchmarks/kernels/offload_launch.cpp)"
timeout 120 "${runner[@]}" "$bundle/offload_launch" 2>&1 | tee "$out/offload_launch.txt"

if [ -f "$bundle/checkpoint.safetensors" ]; then
  echo "== diffuse-sample on the trained model, GPU then CPU"
  for d in gpu cpu; do
    TIMEFORMAT="whole process, --device $d: %R s"
    time run "$bundle/diffuse-sample" --checkpoint "$bundle/checkpoint.safetensors" --count 16 --seed 3 \
      --device $d --out "$out/sample-$d" 2>&1 | grep -E "device|sampled|error" || true
  done
  cmp "$out/sample-gpu/grid.png" "$out/sample-cpu/grid.png" && echo "grids identical" ||
    echo "grids differ in some 8-bit levels (device_sampling above gives the float distance)"
fi

if [ -f "$bundle/train-images.idx.gz" ]; then
  echo "== training steps of edm-mnist-small, batch 128, GPU then CPU (median images/s of steps 11-30)"
  for d in gpu cpu; do
    rm -rf "$out/train-$d"
    timeout 300 "${runner[@]}" "$bundle/diffuse-train" --data "$bundle/train-images.idx.gz" --model edm-mnist-small \
      --batch 128 --steps 30 --device $d --out "$out/train-$d" 2>&1 | grep -E "device|error" || true
    grep -o '"images_per_second":[0-9.]*' "$out/train-$d"/*.jsonl 2>/dev/null | tail -20 | cut -d: -f2 | sort -n |
      awk -v d=$d '{a[NR]=$1} END {if (NR) print "--device " d ": " a[int((NR+1)/2)] " images/s"}'
  done
fi

echo "== the offload build's test suite (GPU present; tests select it where they test the device)"
fails=0
for t in "$bundle"/test_*; do
  if timeout 300 "${runner[@]}" "$t" --gtest_brief=1 > "$out/$(basename "$t").log" 2>&1; then echo "$(basename "$t"): passed"
  else echo "$(basename "$t"): FAILED"; tail -20 "$out/$(basename "$t").log"; fails=1; fi
done
exit $fails
