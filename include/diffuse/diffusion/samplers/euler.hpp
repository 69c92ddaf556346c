// Euler's method on the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma
// (k-diffusion sample_euler; EDM eq. 3 with s(t) = 1, sigma(t) = t), first order, with
// EDM's optional churn (S_churn etc., see samplers/common.hpp). One denoiser call per step.
#pragma once

#include <cstddef>
#include <limits>
#include <span>

#include "diffuse/diffusion/samplers/common.hpp"

namespace diffuse::diffusion {

/// First-order ODE sampler: x <- x + (sigma_next - sigma) (x - D(x; sigma)) / sigma.
template <Schedule Sched = KarrasSchedule>
struct Euler {
  Sched schedule{};  ///< the sigma schedule the steps follow
  std::size_t steps = 18;  ///< number of steps, one denoiser call each
  double s_churn = 0.0;  ///< 0: deterministic
  double s_tmin = 0.0;  ///< churn only for sigma >= s_tmin (EDM's S_tmin)
  double s_tmax = std::numeric_limits<double>::infinity();  ///< churn only for sigma <= s_tmax (EDM's S_tmax)
  double s_noise = 1.0;  ///< std scale of the churn noise (EDM's S_noise)

  DIFFUSE_SAMPLER_ENTRY_POINTS

  /// One pass over `sigmas` (descending, ending in 0). x: (N, H, W, C), integrated in place.
  template <class D, class Batch, class Cb>
  void run(D& denoise, TensorView<float, Batch> x, std::span<const double> sigmas, NoiseSource<Batch>& noise,
           Cb& callback) const {
    const std::size_t n = sigmas.size() - 1;
    Tensor<float, Batch> den(x.batch()), eps(s_churn > 0.0 ? x.batch() : 0);
    for (std::size_t i = 0; i < n; ++i) {
      const double sigma = detail::churn(sigmas[i], n, s_churn, s_tmin, s_tmax, s_noise, x, eps.view(), noise);
      detail::call_denoiser(denoise, x, sigma, den.view());
      detail::call_back(callback, i, sigma, x, den.view());
      x = x + static_cast<float>((sigmas[i + 1] - sigma) / sigma) * (x - den);
    }
  }
};

}  // namespace diffuse::diffusion
