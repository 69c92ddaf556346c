#!/usr/bin/env bash
# The one set-up script behind the README's two commands.
#
#   cmake/setup.sh main [options]   install what is missing, build, then train
#                                   edm-mnist-small on Fashion-MNIST and its labels (a
#                                   class-conditional model) for 5 minutes and write
#                                   sample grids to out/fashion-mnist (options go to
#                                   diffuse-train, e.g. --minutes 60)
#   cmake/setup.sh test             install what is missing, build, run the whole test
#                                   suite (release build with MPI data parallelism, ASan +
#                                   UBSan and GPU-offload builds, consumer test; without a
#                                   GPU the offload build's device tests run its device
#                                   code on the host)
#
# Debian packages are installed only when missing (with sudo when not root), so the
# script also works offline once everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
shift || true
case "$mode" in
  main|test) ;;
  *) echo "usage: $0 main|test" >&2; exit 2 ;;
esac

packages=(
  cmake g++ make              # the toolchain
  pkg-config                  # the consumer test of the installed diffuse.pc
  doxygen                     # the API reference and its test (docs.api_reference)
  libxsimd-dev                # SIMD (the library's dependency; OpenMP comes with g++)
  nlohmann-json3-dev          # JSON: safetensors headers (the library's dependency), the training log
  libgtest-dev                # tests
  libbenchmark-dev            # benchmarks
  libcli11-dev                # the programs' command lines
  libeigen3-dev               # diffuse::eval: the Fréchet distance's matrix square roots
  zlib1g-dev libspng-dev libstb-dev  # diffuse::io: gzip-compressed data sets; PNG (checksums verified), JPEG
  dataset-fashion-mnist       # real data for the main program and the data tests
)
[ "$mode" = test ] && packages+=(
  gcc-12-offload-nvptx          # the GPU path's build (OpenMP offload to NVIDIA)
  clang-14 libclang-rt-14-dev   # the fuzz build (libFuzzer + ASan + UBSan)
  libopenmpi-dev openmpi-bin    # data-parallel training (the release build's diffuse-train under mpirun)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
    [ -t 0 ] || sudo=(sudo -n)  # no terminal to ask for a password on: fail instead of waiting
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; }; then
    echo "setup: could not install ${missing[*]} (offline? install them by hand and run again)" >&2
    exit 1
  fi
fi

jobs=$(nproc)
build() {  # configure and build one preset (all of it, or the targets named after it)
  local flags=()
  [ "$mode-$1" = test-release ] && flags=(-DDIFFUSE_MPI=ON)  # diffuse-train under mpirun, and its tests
  cmake --preset "$1" "${flags[@]}" >/dev/null
  local targets=("${@:2}")
  cmake --build --preset "$1" -j "$jobs" ${targets[@]:+--target "${targets[@]}"}
}

if [ "$mode" = main ]; then
  build release diffuse-train diffuse-sample  # only what the main job runs
  fashion=/usr/share/datasets/fashion-mnist
  exec build/release/examples/diffuse-train --model edm-mnist-small --minutes 5 --batch 32 --lr 2e-3 \
    --data $fashion/train-images-idx3-ubyte.gz --labels $fashion/train-labels-idx1-ubyte.gz \
    --out out/fashion-mnist "$@"
fi

build release
ctest --preset release -j "$jobs"
build sanitize
ctest --preset sanitize -j "$jobs"
build offload
ctest --preset offload -j "$jobs"
# Fuzzing, bounded: each target mutates from its seeds for DIFFUSE_FUZZ_SECONDS (default 30).
cmake --preset fuzz -DDIFFUSE_FUZZ_SECONDS="${DIFFUSE_FUZZ_SECONDS:-30}" >/dev/null
cmake --build --preset fuzz -j "$jobs"
fuzz_rc=0
ctest --preset fuzz -j "$jobs" -V >build/fuzz/fuzz.log 2>&1 || fuzz_rc=$?
grep -E "stat::number_of_executed_units|Test +#[0-9]+: fuzz" build/fuzz/fuzz.log || true
((fuzz_rc == 0)) || { echo "setup: a fuzz target failed (build/fuzz/fuzz.log; the input is build/fuzz/tests/fuzz/crash-*)" >&2; exit 1; }
