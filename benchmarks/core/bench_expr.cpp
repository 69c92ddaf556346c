// The fused element-wise expression y = silu(a * x + b) in GB/s, side by side with a
// plain scalar loop computing the same thing and with straight copies (memcpy and
// y = x): the fused pass should run at memory speed.
//
//   build/release/benchmarks/core/bench_expr --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstring>

#include <diffuse/tensor.hpp>

namespace {

using namespace diffuse;
using Vec = Tensor<float, Shape<dyn>>;

struct Data {
  Vec x, y;
  explicit Data(std::size_t n) : x(n), y(n) {
    Generator g(1);
    fill_uniform(x, g, -2, 2);
  }
};

// Two streams (read x, write y) of 4 bytes per element.
void account(benchmark::State& state, std::size_t n) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(2 * n * sizeof(float)));
}

void BM_FusedSilu(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  Data d(n);
  const float a = 1.5f, b = 0.25f;
  for (auto _ : state) {
    d.y = silu(a * d.x + b);
    benchmark::DoNotOptimize(d.y.data());
    benchmark::ClobberMemory();
  }
  account(state, n);
}

void BM_ScalarLoopSilu(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  Data d(n);
  const float a = 1.5f, b = 0.25f;
  for (auto _ : state) {
    const float* x = d.x.data();
    float* y = d.y.data();
    for (std::size_t i = 0; i < n; ++i) {
      const float u = a * x[i] + b;
      y[i] = u / (1.f + std::exp(-u));
    }
    benchmark::DoNotOptimize(d.y.data());
    benchmark::ClobberMemory();
  }
  account(state, n);
}

void BM_Memcpy(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  Data d(n);
  for (auto _ : state) {
    std::memcpy(d.y.data(), d.x.data(), n * sizeof(float));
    benchmark::DoNotOptimize(d.y.data());
    benchmark::ClobberMemory();
  }
  account(state, n);
}

void BM_AssignCopy(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  Data d(n);
  for (auto _ : state) {
    d.y = d.x * 1.f;
    benchmark::DoNotOptimize(d.y.data());
    benchmark::ClobberMemory();
  }
  account(state, n);
}

// 1 Mi floats (8 MB of traffic, about the L2+L3 of a small machine) and 16 Mi
// floats (128 MB, main memory).
#define DIFFUSE_SIZES ->Arg(1 << 20)->Arg(1 << 24)->UseRealTime()->Unit(benchmark::kMillisecond)
BENCHMARK(BM_FusedSilu) DIFFUSE_SIZES;
BENCHMARK(BM_ScalarLoopSilu) DIFFUSE_SIZES;
BENCHMARK(BM_Memcpy) DIFFUSE_SIZES;
BENCHMARK(BM_AssignCopy) DIFFUSE_SIZES;

}  // namespace

BENCHMARK_MAIN();
