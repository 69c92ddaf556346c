// The reference model edm-mnist-small (docs/benchmark-model.md) end to end:
// a full training step (forward, EDM loss, backward, AdamW, EMA) at batch 128, and the
// 18-step EDM Heun sampler (35 network evaluations) for 16 images, as images/s and
// seconds, with the process's peak resident memory.
//
//   build/release/benchmarks/models/bench_models --benchmark_repetitions=3
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <memory>

#include <diffuse/diffusion/precond.hpp>
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

Images random_images(std::size_t n) {
  Tensor<float, Net::Batch> x(n);
  Generator g(1);
  fill_uniform(x, g, -1, 1);
  return Images(std::move(x));
}

void BM_TrainStep_EdmMnistSmall(benchmark::State& state) {
  const auto batch = static_cast<std::size_t>(state.range(0));
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
BENCHMARK(BM_TrainStep_EdmMnistSmall)->Arg(128)->UseRealTime()->Unit(benchmark::kSecond)->MinTime(5.0);

void BM_HeunSample_EdmMnistSmall(benchmark::State& state) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  auto model = std::make_unique<Model>();
  const diffusion::Heun<diffusion::KarrasSchedule> sampler{.steps = 18};
  Tensor<float, Net::Batch> x(batch);
  std::uint64_t seed = 0;
  for (auto _ : state) {
    sampler.sample(*model, x.view(), seed++);
    benchmark::DoNotOptimize(x.data());
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(state.iterations() * batch),
                                                  benchmark::Counter::kIsRate);
  state.counters["peak_rss_MiB"] = peak_rss_mib();
}
BENCHMARK(BM_HeunSample_EdmMnistSmall)->Arg(16)->UseRealTime()->Unit(benchmark::kSecond)->MinTime(5.0);

}  // namespace

BENCHMARK_MAIN();
