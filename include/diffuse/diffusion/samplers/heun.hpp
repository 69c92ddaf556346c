// EDM's Heun sampler (Karras et al. 2022, Algorithm 2; k-diffusion sample_heun): an Euler
// step corrected by the trapezoidal rule, second order, with the optional churn
// (S_churn, S_tmin, S_tmax, S_noise) that turns it into EDM's stochastic sampler. Two
// denoiser calls per step except the last (to sigma = 0), which is a plain Euler step:
// 2n - 1 calls for n steps (35 for EDM's 18).
#pragma once

#include <cstddef>
#include <limits>
#include <span>

#include "diffuse/diffusion/samplers/common.hpp"

namespace diffuse::diffusion {

/// Second-order ODE sampler (EDM Algorithm 2).
template <Schedule Sched = KarrasSchedule>
struct Heun {
  Sched schedule{};  ///< the sigma schedule the steps follow
  std::size_t steps = 18;  ///< number of steps (2 steps - 1 denoiser calls)
  double s_churn = 0.0;  ///< 0: deterministic (EDM's setting for the reference model)
  double s_tmin = 0.0;  ///< churn only for sigma >= s_tmin (EDM's S_tmin)
  double s_tmax = std::numeric_limits<double>::infinity();  ///< churn only for sigma <= s_tmax (EDM's S_tmax)
  double s_noise = 1.0;  ///< std scale of the churn noise (EDM's S_noise)

  DIFFUSE_SAMPLER_ENTRY_POINTS

  /// One pass over `sigmas` (descending, ending in 0). x: (N, H, W, C), integrated in place.
  template <class D, class Batch, class Cb>
  void run(D& denoise, TensorView<float, Batch> x, std::span<const double> sigmas, NoiseSource<Batch>& noise,
           Cb& callback) const {
    const std::size_t n = sigmas.size() - 1;
    const std::size_t b = x.batch();
    Tensor<float, Batch> den(b), d(b), x2(b), eps(s_churn > 0.0 ? b : 0);
    for (std::size_t i = 0; i < n; ++i) {
      const double sigma = detail::churn(sigmas[i], n, s_churn, s_tmin, s_tmax, s_noise, x, eps.view(), noise);
      const double next = sigmas[i + 1];
      detail::call_denoiser(denoise, x, sigma, den.view());
      detail::call_back(callback, i, sigma, x, den.view());
      const auto dt = static_cast<float>(next - sigma);
      d = (x - den) * static_cast<float>(1.0 / sigma);  // dx/dsigma at (x, sigma)
      if (next == 0.0) {
        x = x + dt * d;
        continue;
      }
      x2 = x + dt * d;
      detail::call_denoiser(denoise, x2.view(), next, den.view());
      // x + dt (d + d') / 2 with d' = (x2 - D(x2)) / next
      x = x + (0.5f * dt) * (d + (x2 - den) * static_cast<float>(1.0 / next));
    }
  }
};

}  // namespace diffuse::diffusion
