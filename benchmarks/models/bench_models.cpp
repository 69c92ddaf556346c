// The reference model edm-mnist-small (docs/benchmark-model.md) end to end:
// a full training step (forward, EDM loss, backward, AdamW, EMA) at batch 128, the
// 18-step EDM Heun sampler (35 network evaluations) for 16 images and one denoiser
// evaluation D(x; sigma) at batch 1 and 16, as images/s and seconds, with the process's
// peak resident memory. The last argument of each row is the matmul precision (0 fp32,
// 1 bf16: kernels/precision.hpp); bf16 rows are skipped where BF16 cannot run.
//
//   build/release/benchmarks/models/bench_models --benchmark_repetitions=3
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <memory>

#include <diffuse/diffusion/precond.hpp>
#include <diffuse/kernels/precision.hpp>
#include <diffuse/diffusion/sampler.hpp>
#include <diffuse/train/trainer.hpp>
#include <diffuse/unet.hpp>

namespace {

using namespace diffuse;
using Net = nn::UNet<nn::edm_mnist_small>;
using Model = diffusion::EDMPrecond<Net>;
using Images = train::TensorImages<28, 28, 1>;

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

bool use_precision(benchmark::State& state, bool bf16) {
  if (bf16 && !kernels::bf16_available()) {
    state.SkipWithError(kernels::bf16_unavailable_reason().c_str());
    return false;
  }
  kernels::set_matmul_precision(bf16 ? kernels::MatmulPrecision::bf16 : kernels::MatmulPrecision::fp32);
  return true;
}

Images random_images(std::size_t n) {
  Tensor<float, Net::Batch> x(n);
  Generator g(1);
  fill_uniform(x, g, -1, 1);
  return Images(std::move(x));
}

void BM_TrainStep_EdmMnistSmall(benchmark::State& state) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  if (!use_precision(state, state.range(1) != 0)) return;
  const Images data = random_images(2 * batch);
  auto model = std::make_unique<Model>();
  train::TrainerConfig cfg;
  cfg.batch = batch;
  train::Trainer trainer(*model, data, cfg);
  trainer.step();  // the first step sizes every buffer
  for (auto _ : state) benchmark::DoNotOptimize(trainer.step().loss);
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(state.iterations() * batch),
                                                  benchmark::Counter::kIsRate);
  state.counters["peak_rss_MiB"] = peak_rss_mib();
}
BENCHMARK(BM_TrainStep_EdmMnistSmall)->Args({128, 0})->Args({128, 1})->UseRealTime()->Unit(benchmark::kSecond)->MinTime(5.0);

void BM_HeunSample_EdmMnistSmall(benchmark::State& state) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  if (!use_precision(state, state.range(1) != 0)) return;
  auto model = std::make_unique<Model>();
  const diffusion::Heun<diffusion::KarrasSchedule> sampler{.steps = 18};
  Tensor<float, Net::Batch> x(batch);
  std::uint64_t seed = 0;
  // Untimed warm-up, as the PyTorch and ONNX Runtime sides of compare_pytorch.py do: the
  // first sampling allocates the network's buffers.
  sampler.sample(*model, x.view(), seed++);
  for (auto _ : state) {
    sampler.sample(*model, x.view(), seed++);
    benchmark::DoNotOptimize(x.data());
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(state.iterations() * batch),
                                                  benchmark::Counter::kIsRate);
  state.counters["peak_rss_MiB"] = peak_rss_mib();
}
BENCHMARK(BM_HeunSample_EdmMnistSmall)->Args({16, 0})->Args({16, 1})->UseRealTime()->Unit(benchmark::kSecond)->MinTime(5.0);

void BM_Denoise_EdmMnistSmall(benchmark::State& state) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  if (!use_precision(state, state.range(1) != 0)) return;
  auto model = std::make_unique<Model>();
  Tensor<float, Net::Batch> x(batch), d(batch);
  Generator g(2);
  fill_normal(x, g);
  (*model)(x.view(), 1.0f, d.view());  // untimed warm-up: the first call allocates
  for (auto _ : state) {
    (*model)(x.view(), 1.0f, d.view());
    benchmark::DoNotOptimize(d.data());
  }
  state.counters["peak_rss_MiB"] = peak_rss_mib();
}
BENCHMARK(BM_Denoise_EdmMnistSmall)
    ->Args({1, 0})->Args({1, 1})->Args({16, 0})->Args({16, 1})
    ->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
