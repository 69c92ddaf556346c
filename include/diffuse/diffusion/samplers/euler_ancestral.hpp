// Euler ancestral (k-diffusion sample_euler_ancestral): an Euler step down to sigma_down,
// then fresh noise of std sigma_up, so that the marginal noise level is sigma_next
// (see ancestral_step in samplers/common.hpp). eta = 1 is the DDPM-like ancestral
// sampler; eta = 0 is Euler. Stochastic, first order; one denoiser call per step.
#pragma once

#include <cstddef>
#include <span>

#include "diffuse/diffusion/samplers/common.hpp"

namespace diffuse::diffusion {

/// Stochastic first-order sampler with ancestral noise.
template <Schedule Sched = KarrasSchedule>
struct EulerAncestral {
  Sched schedule{};  ///< the sigma schedule the steps follow
  std::size_t steps = 18;  ///< number of steps, one denoiser call each
  double eta = 1.0;  ///< DDIM's eta: 0 deterministic, 1 full ancestral noise
  double s_noise = 1.0;  ///< scale of the fresh noise (k-diffusion's s_noise)

  DIFFUSE_SAMPLER_ENTRY_POINTS

  /// One pass over `sigmas` (descending, ending in 0). x: (N, H, W, C), integrated in place.
  template <class D, class Batch, class Cb>
  void run(D& denoise, TensorView<float, Batch> x, std::span<const double> sigmas, NoiseSource<Batch>& noise,
           Cb& callback) const {
    const std::size_t n = sigmas.size() - 1;
    Tensor<float, Batch> den(x.batch()), z(eta > 0.0 ? x.batch() : 0);
    for (std::size_t i = 0; i < n; ++i) {
      const double sigma = sigmas[i];
      detail::call_denoiser(denoise, x, sigma, den.view());
      detail::call_back(callback, i, sigma, x, den.view());
      const AncestralStep a = ancestral_step(sigma, sigmas[i + 1], eta);
      x = x + static_cast<float>((a.sigma_down - sigma) / sigma) * (x - den);
      if (a.sigma_up > 0.0) {
        noise.draw(z.view());
        x = x + static_cast<float>(s_noise * a.sigma_up) * z;
      }
    }
  }
};

}  // namespace diffuse::diffusion
