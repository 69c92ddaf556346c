// DPM-Solver++(2M) (Lu et al. 2022, arXiv 2211.01095; k-diffusion sample_dpmpp_2m): a
// second-order multistep solver in lambda = -log sigma that integrates the linear part
// exactly and extrapolates the denoised estimate from the last two steps:
//   h = log(sigma / sigma_next), r = h_prev / h,
//   D' = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}   (D' = D_i on the first and the last step),
//   x <- (sigma_next / sigma) x + (1 - sigma_next / sigma) D'.
// Deterministic; one denoiser call per step; the last step (to 0) returns D'. A repeated
// sigma is a step of length 0 that leaves x and the history as they are.
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <utility>

#include "diffuse/diffusion/samplers/common.hpp"

namespace diffuse::diffusion {

/// Second-order multistep ODE sampler (DPM-Solver++(2M)).
template <Schedule Sched = KarrasSchedule>
struct DpmPp2M {
  Sched schedule{};  ///< the sigma schedule the steps follow
  std::size_t steps = 18;  ///< number of steps, one denoiser call each

  DIFFUSE_SAMPLER_ENTRY_POINTS

  /// One pass over `sigmas` (descending, ending in 0). x: (N, H, W, C), integrated in place.
  /// Draws no noise.
  template <class D, class Batch, class Cb>
  void run(D& denoise, TensorView<float, Batch> x, std::span<const double> sigmas, NoiseSource<Batch>&,
           Cb& callback) const {
    const std::size_t n = sigmas.size() - 1;
    Tensor<float, Batch> den(x.batch()), old(x.batch());
    double last = 0.0;  // sigma of the last step that moved (0: none yet), whose estimate is `old`
    for (std::size_t i = 0; i < n; ++i) {
      const double sigma = sigmas[i], next = sigmas[i + 1];
      detail::call_denoiser(denoise, x, sigma, den.view());
      detail::call_back(callback, i, sigma, x, den.view());
      // A repeated sigma (a degenerate schedule) is a step of length 0: it changes neither
      // x nor the history, so the result is that of the schedule without the repeat.
      if (next == sigma) continue;
      if (next == 0.0) {
        x = den;  // the limit h -> infinity of the update below
      } else {
        const auto ratio = static_cast<float>(next / sigma);
        const auto keep = static_cast<float>(-std::expm1(-std::log(sigma / next)));  // 1 - next / sigma
        if (last == 0.0) {
          x = ratio * x + keep * den;
        } else {
          const double h = std::log(sigma / next), h_prev = std::log(last / sigma);
          const double c = 0.5 * h / h_prev;  // 1 / (2r)
          x = ratio * x + keep * (static_cast<float>(1.0 + c) * den - static_cast<float>(c) * old);
        }
      }
      std::swap(den, old);
      last = sigma;
    }
  }
};

}  // namespace diffuse::diffusion
