// Kernel benchmarks: GFLOP/s and fraction of the measured FMA peak for GEMM (side by side
// with OpenBLAS cblas_sgemm when available) and for every convolution of edm-mnist-small
// at batch 128 (forward, backward-input, backward-weight), plus the peak itself.
//
// Run: OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=2 bench_kernels
//        --benchmark_repetitions=5 --benchmark_report_aggregates_only=true  [--cpu_time]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "diffuse/core/parallel.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/kernels/conv2d.hpp"
#include "diffuse/kernels/gemm.hpp"
#include "diffuse/kernels/precision.hpp"
#include "diffuse/kernels/resample.hpp"

#if DIFFUSE_BF16_KERNELS
#include <immintrin.h>
#endif

#if DIFFUSE_BENCH_OPENBLAS
#include <cblas.h>
#endif

namespace k = diffuse::kernels;
using k::index_t;

namespace {

// ---- machine peak: FMA throughput with independent accumulators -------------------------

// 16 independent chains cover latency 4 x 2 FMA ports with room to spare.
double fma_loop(long iters) {
  using V = diffuse::simd<float>;
  constexpr int A = 16;
  V acc[A];
  for (int i = 0; i < A; ++i) acc[i] = V(float(i) * 1e-3f);
  const V m(0.999999f), c(1e-7f);
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < A; ++i) acc[i] = xsimd::fma(acc[i], m, c);
  }
  V s(0.f);
  for (int i = 0; i < A; ++i) s += acc[i];
  return double(diffuse::reduce_add<float>(s));
}

double peak_flops_per_iter() { return 16.0 * double(diffuse::simd_width<float>) * 2.0; }

// Measured FP32 peak in GFLOP/s at nt threads: best of many ~10 ms runs, so that a
// moment of quiet on this shared machine is found.
double measure_peak(int nt) {
  const long iters = 5'000'000;
  double best = 0;
  for (int rep = 0; rep < 20; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    double sink = 0;
    DIFFUSE_OMP(parallel num_threads(nt) reduction(+ : sink))
    sink += fma_loop(iters);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    benchmark::DoNotOptimize(sink);
    best = std::max(best, double(nt) * double(iters) * peak_flops_per_iter() / s * 1e-9);
  }
  return best;
}

double g_peak[3] = {0, 0, 0};  // GFLOP/s at 1 and 2 threads, measured in main

#if DIFFUSE_BF16_KERNELS
// BF16 dot-product peak: `vdpbf16ps` does 16 lanes x 2 multiply-adds, i.e. 64 FLOPs. Its
// throughput differs between CPUs (one per cycle on AMD Zen 4, where FP32 FMAs of 512 bits
// also issue once per cycle; one every two cycles on some Intel cores with two 512-bit FMA
// ports), which decides whether BF16 operands are faster than FP32 at all.
__attribute__((target("avx512f,avx512bw,avx512bf16"))) double bf16_loop(long iters) {
  constexpr int A = 16;
  __m512 acc[A];
  for (int i = 0; i < A; ++i) acc[i] = _mm512_set1_ps(float(i) * 1e-3f);
  __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x33d633d6);
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < A; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    __asm__("" : "+v"(a));  // keep the loop
  }
  __m512 s = acc[0];
  for (int i = 1; i < A; ++i) s = _mm512_add_ps(s, acc[i]);
  return double(_mm512_reduce_add_ps(s));
}

void BM_PeakBf16(benchmark::State& st) {
  if (!k::bf16_available()) {
    st.SkipWithError(k::bf16_unavailable_reason().c_str());
    return;
  }
  const int nt = int(st.range(0));
  const long iters = 1'000'000;
  for (auto _ : st) {
    double sink = 0;
    DIFFUSE_OMP(parallel num_threads(nt) reduction(+ : sink))
    sink += bf16_loop(iters);
    benchmark::DoNotOptimize(sink);
  }
  const double flops = double(nt) * double(iters) * 16.0 * 64.0;
  st.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
#endif

void BM_Peak(benchmark::State& st) {
  const int nt = int(st.range(0));
  const long iters = 1'000'000;
  for (auto _ : st) {
    double sink = 0;
    DIFFUSE_OMP(parallel num_threads(nt) reduction(+ : sink))
    sink += fma_loop(iters);
    benchmark::DoNotOptimize(sink);
  }
  const double flops = double(nt) * double(iters) * peak_flops_per_iter();
  st.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void set_counters(benchmark::State& st, double flops, int nt) {
  st.counters["GFLOPS"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["peak_frac"] = benchmark::Counter(
      flops * 1e-9 / g_peak[nt], benchmark::Counter::kIsIterationInvariantRate);
}

std::vector<float> random_floats(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}

// ---- GEMM -----------------------------------------------------------------------------

// Runs under the precision of the benchmark's last argument (0 fp32, 1 bf16); a bf16 row
// where BF16 cannot run is skipped with the reason.
bool use_precision(benchmark::State& st, bool bf16) {
  if (bf16 && !k::bf16_available()) {
    st.SkipWithError(k::bf16_unavailable_reason().c_str());
    return false;
  }
  k::set_matmul_precision(bf16 ? k::MatmulPrecision::bf16 : k::MatmulPrecision::fp32);
  return true;
}

void BM_Gemm(benchmark::State& st) {
  const index_t n = st.range(0);
  const int nt = int(st.range(1));
  if (!use_precision(st, st.range(2) != 0)) return;
  diffuse::set_num_threads(nt);
  auto a = random_floats(std::size_t(n * n), 1), b = random_floats(std::size_t(n * n), 2);
  std::vector<float> c(std::size_t(n * n));
  for (auto _ : st) {
    k::gemm(false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_counters(st, 2.0 * double(n) * double(n) * double(n), nt);
}

#if DIFFUSE_BENCH_OPENBLAS
void BM_OpenBLAS_Sgemm(benchmark::State& st) {
  const index_t n = st.range(0);
  const int nt = int(st.range(1));
  openblas_set_num_threads(nt);
  auto a = random_floats(std::size_t(n * n), 1), b = random_floats(std::size_t(n * n), 2);
  std::vector<float> c(std::size_t(n * n));
  for (auto _ : st) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(n), int(n), int(n), 1.f,
                a.data(), int(n), b.data(), int(n), 0.f, c.data(), int(n));
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_counters(st, 2.0 * double(n) * double(n) * double(n), nt);
}
#endif

// ---- convolutions of edm-mnist-small at batch 128 --------------------------------------

struct ConvCase {
  const char* name;
  k::Conv2dShape s;
};

const ConvCase conv_cases[] = {
    {"3x3_32-32_28", {128, 28, 28, 32, 32, 3, 1, 1}},
    {"3x3_1-32_28", {128, 28, 28, 1, 32, 3, 1, 1}},   // the first convolution
    {"3x3_32-1_28", {128, 28, 28, 32, 1, 3, 1, 1}},   // the output convolution
    {"3x3_64-64_14", {128, 14, 14, 64, 64, 3, 1, 1}},
    {"3x3_64-64_7", {128, 7, 7, 64, 64, 3, 1, 1}},
    {"3x3_32-64_14", {128, 14, 14, 32, 64, 3, 1, 1}},
    {"3x3_96-32_28", {128, 28, 28, 96, 32, 3, 1, 1}},
    {"3x3_128-64_14", {128, 14, 14, 128, 64, 3, 1, 1}},
    {"3x3s2_32_28-14", {128, 28, 28, 32, 32, 3, 2, 1}},
    {"3x3s2_64_14-7", {128, 14, 14, 64, 64, 3, 2, 1}},
    {"1x1_96-32_28", {128, 28, 28, 96, 32, 1, 1, 0}},
    {"1x1_128-64_14", {128, 14, 14, 128, 64, 1, 1, 0}},
    {"1x1_96-64_14", {128, 14, 14, 96, 64, 1, 1, 0}},
    {"1x1_128-64_7", {128, 7, 7, 128, 64, 1, 1, 0}},
};

enum class Pass { fwd, bwd_input, bwd_weight };

void BM_Conv(benchmark::State& st, k::Conv2dShape s, Pass pass, int nt, bool bf16) {
  if (!use_precision(st, bf16)) return;
  diffuse::set_num_threads(nt);
  auto x = random_floats(std::size_t(s.n * s.h * s.w * s.cin), 1);
  auto w = random_floats(std::size_t(s.kk() * s.cout), 2);
  auto bias = random_floats(std::size_t(s.cout), 3);
  auto y = random_floats(std::size_t(s.pixels() * s.cout), 4);
  std::vector<float> dw(w.size()), db(bias.size());
  for (auto _ : st) {
    switch (pass) {
      case Pass::fwd: k::conv2d_forward(s, x.data(), w.data(), bias.data(), y.data()); break;
      case Pass::bwd_input: k::conv2d_backward_input(s, y.data(), w.data(), x.data()); break;
      case Pass::bwd_weight:
        k::conv2d_backward_weight(s, x.data(), y.data(), dw.data(), db.data());
        break;
    }
    benchmark::ClobberMemory();
  }
  benchmark::DoNotOptimize(x.data());
  benchmark::DoNotOptimize(y.data());
  benchmark::DoNotOptimize(dw.data());
  set_counters(st, s.flops(), nt);
}

void BM_Upsample(benchmark::State& st, bool backward) {
  const index_t n = 128, h = 14, w = 14, c = 64;
  diffuse::set_num_threads(2);
  auto x = random_floats(std::size_t(n * h * w * c), 1);
  std::vector<float> y(x.size() * 4);
  for (auto _ : st) {
    if (backward)
      k::upsample2x_nearest_backward(y.data(), x.data(), n, h, w, c);
    else
      k::upsample2x_nearest_forward(x.data(), y.data(), n, h, w, c);
    benchmark::ClobberMemory();
  }
  st.counters["GB/s"] = benchmark::Counter(double(x.size()) * 5 * sizeof(float) * 1e-9,
                                           benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

// Wall-clock timing (the default, what a user waits for) or, with --cpu_time, process CPU
// time: then GFLOP/s are per second of CPU the process actually got, which on a shared,
// oversubscribed machine estimates the speed of the kernels themselves (run it with
// OMP_WAIT_POLICY=passive so that waiting threads sleep instead of burning CPU).
bool g_cpu_time = false;

benchmark::internal::Benchmark* timing(benchmark::internal::Benchmark* b) {
  return g_cpu_time ? b->MeasureProcessCPUTime() : b->UseRealTime();
}

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--cpu_time") {
      g_cpu_time = true;
      for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
      --argc;
      break;
    }
  g_peak[1] = measure_peak(1);
  g_peak[2] = measure_peak(2);
  std::printf("measured FP32 FMA peak: %.1f GFLOP/s (1 thread), %.1f GFLOP/s (2 threads)\n",
              g_peak[1], g_peak[2]);
#if DIFFUSE_BENCH_OPENBLAS
  std::printf("OpenBLAS core: %s\n", openblas_get_corename());
#else
  std::printf("OpenBLAS not found at build time: no cblas_sgemm comparison\n");
#endif
  timing(benchmark::RegisterBenchmark("BM_Peak", BM_Peak)->Arg(1)->Arg(2));
#if DIFFUSE_BF16_KERNELS
  timing(benchmark::RegisterBenchmark("BM_PeakBf16", BM_PeakBf16)->Arg(1)->Arg(2));
#endif
  for (long n : {256, 512, 1024, 2048})
    for (long nt : {1, 2}) {
      for (long bf16 : {0, 1})
        timing(benchmark::RegisterBenchmark(bf16 ? "BM_Gemm_bf16" : "BM_Gemm", BM_Gemm)
                   ->Args({n, nt, bf16}));
#if DIFFUSE_BENCH_OPENBLAS
      timing(benchmark::RegisterBenchmark("BM_OpenBLAS_Sgemm", BM_OpenBLAS_Sgemm)->Args({n, nt}));
#endif
    }
  const std::pair<Pass, const char*> passes[] = {
      {Pass::fwd, "fwd"}, {Pass::bwd_input, "bwd_input"}, {Pass::bwd_weight, "bwd_weight"}};
  for (int nt : {2, 1})
    for (const auto& c : conv_cases)
      for (const auto& [pass, pname] : passes) {
        const std::string name = std::string("BM_Conv/") + c.name + "/" + pname + "/threads:" +
                                 std::to_string(nt);
        timing(benchmark::RegisterBenchmark(name.c_str(), BM_Conv, c.s, pass, nt, false))
            ->Unit(benchmark::kMillisecond);
        timing(benchmark::RegisterBenchmark((name + "/bf16").c_str(), BM_Conv, c.s, pass, nt, true))
            ->Unit(benchmark::kMillisecond);
      }
  timing(benchmark::RegisterBenchmark("BM_Upsample2x/fwd_128x14x14x64", BM_Upsample, false));
  timing(benchmark::RegisterBenchmark("BM_Upsample2x/bwd_128x14x14x64", BM_Upsample, true));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
