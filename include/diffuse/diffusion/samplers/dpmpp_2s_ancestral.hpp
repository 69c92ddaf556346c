// DPM-Solver++(2S) with ancestral noise (Lu et al. 2022, arXiv 2211.01095; k-diffusion
// sample_dpmpp_2s_ancestral): a single-step second-order solver in lambda = -log sigma.
// With t = -log sigma, t' = -log sigma_down, h = t' - t and the midpoint s = t + h/2:
//   x2 = (sigma_s / sigma) x - expm1(-h/2) D(x; sigma),
//   x  = (sigma_down / sigma) x - expm1(-h) D(x2; sigma_s),
// then fresh noise of std sigma_up (ancestral_step); a step with sigma_down = 0 is an
// Euler step. Two denoiser calls per step except the last. eta = 0 gives the
// deterministic DPM-Solver++(2S).
#pragma once

#include <cmath>
#include <cstddef>
#include <span>

#include "diffuse/diffusion/samplers/common.hpp"

namespace diffuse::diffusion {

/// Second-order single-step sampler with ancestral noise (DPM-Solver++(2S) ancestral).
template <Schedule Sched = KarrasSchedule>
struct DpmPp2SAncestral {
  Sched schedule{};  ///< the sigma schedule the steps follow
  std::size_t steps = 18;  ///< number of steps (up to 2 denoiser calls each)
  double eta = 1.0;  ///< DDIM's eta: 0 deterministic, 1 full ancestral noise
  double s_noise = 1.0;  ///< scale of the fresh noise

  DIFFUSE_SAMPLER_ENTRY_POINTS

  /// One pass over `sigmas` (descending, ending in 0). x: (N, H, W, C), integrated in place.
  template <class D, class Batch, class Cb>
  void run(D& denoise, TensorView<float, Batch> x, std::span<const double> sigmas, NoiseSource<Batch>& noise,
           Cb& callback) const {
    const std::size_t n = sigmas.size() - 1, b = x.batch();
    Tensor<float, Batch> den(b), x2(b), z(eta > 0.0 ? b : 0);
    for (std::size_t i = 0; i < n; ++i) {
      const double sigma = sigmas[i];
      detail::call_denoiser(denoise, x, sigma, den.view());
      detail::call_back(callback, i, sigma, x, den.view());
      if (sigmas[i + 1] == sigma) continue;
      const AncestralStep a = ancestral_step(sigma, sigmas[i + 1], eta);
      if (a.sigma_down == 0.0) {
        x = den;
      } else {
        const double h = std::log(sigma / a.sigma_down), mid = std::sqrt(sigma * a.sigma_down);
        x2 = static_cast<float>(mid / sigma) * x - static_cast<float>(std::expm1(-0.5 * h)) * den;
        detail::call_denoiser(denoise, x2.view(), mid, den.view());
        x = static_cast<float>(a.sigma_down / sigma) * x - static_cast<float>(std::expm1(-h)) * den;
      }
      if (a.sigma_up > 0.0) {
        noise.draw(z.view());
        x = x + static_cast<float>(s_noise * a.sigma_up) * z;
      }
    }
  }
};

}  // namespace diffuse::diffusion
