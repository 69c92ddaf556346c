// How far BF16 operands (kernels/precision.hpp) move a trained edm-mnist-small from FP32:
// the same 16 noise images sampled with the 18-step EDM Heun sampler in fp32 and in bf16,
// and the denoiser D(x; sigma) at x = sample + sigma n for sigmas from 80 to 0.01. Prints
// mean and largest absolute differences in data units (images span [-1, 1]) and the time
// of each sampling run.
//
//   build/release/benchmarks/models/precision_distance runs/fashion/checkpoint.safetensors
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

#include <diffuse/diffusion/precond.hpp>
#include <diffuse/diffusion/sampler.hpp>
#include <diffuse/kernels/precision.hpp>
#include <diffuse/train/checkpoint.hpp>
#include <diffuse/unet.hpp>

namespace {

using namespace diffuse;
using Net = nn::UNet<nn::edm_mnist_small>;
using Model = diffusion::EDMPrecond<Net>;
using Images = Tensor<float, Net::Batch>;

struct Distance {
  double mean = 0, max = 0;
};

Distance distance(const Images& a, const Images& b) {
  Distance d;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double e = std::abs(double(a.data()[i]) - double(b.data()[i]));
    d.mean += e;
    d.max = std::max(d.max, e);
  }
  d.mean /= double(a.size());
  return d;
}

double sample(Model& model, Images& x, kernels::MatmulPrecision p) {
  kernels::set_matmul_precision(p);
  const diffusion::Heun<diffusion::KarrasSchedule> heun{.steps = 18};
  const auto t0 = std::chrono::steady_clock::now();
  heun.sample(model, x.view(), 1);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CHECKPOINT (edm-mnist-small, training checkpoint or weights)\n", argv[0]);
    return 2;
  }
  if (!kernels::bf16_available()) {
    std::fprintf(stderr, "precision_distance: %s\n", kernels::bf16_unavailable_reason().c_str());
    return 1;
  }
  try {
    auto model = std::make_unique<Model>();
    train::load_sampling_weights(model->net(), argv[1], "edm-mnist-small");
    constexpr std::size_t n = 16;
    Images s32(n), s16(n);
    const double t32 = sample(*model, s32, kernels::MatmulPrecision::fp32);
    const double t16 = sample(*model, s16, kernels::MatmulPrecision::bf16);
    const Distance ds = distance(s32, s16);
    std::printf("Heun-18, 16 images from the same noise: fp32 %.2f s, bf16 %.2f s; |fp32 - bf16| mean %.2e, max %.2e\n",
                t32, t16, ds.mean, ds.max);
    Generator g(7);
    Images noise(n), x(n), d32(n), d16(n);
    fill_normal(noise, g);
    for (double sigma : {80.0, 10.0, 1.0, 0.1, 0.01}) {
      x = s32 + float(sigma) * noise;
      kernels::set_matmul_precision(kernels::MatmulPrecision::fp32);
      (*model)(x.view(), float(sigma), d32.view());
      kernels::set_matmul_precision(kernels::MatmulPrecision::bf16);
      (*model)(x.view(), float(sigma), d16.view());
      const Distance dd = distance(d32, d16);
      std::printf("D(x; sigma = %5g): |fp32 - bf16| mean %.2e, max %.2e\n", sigma, dd.mean, dd.max);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "precision_distance: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
