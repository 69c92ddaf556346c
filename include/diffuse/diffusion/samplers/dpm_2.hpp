// DPM-Solver-2 in the Karras ODE (k-diffusion sample_dpm_2 and sample_dpm_2_ancestral):
// an Euler step to the geometric midpoint sigma_mid = sqrt(sigma * sigma_next), then the
// whole step with the derivative taken there (the midpoint rule in log sigma). Second
// order; two denoiser calls per step except the last (to sigma = 0), a plain Euler step.
// Dpm2 has EDM's churn like Heun; Dpm2Ancestral steps down to sigma_down and adds noise
// of std sigma_up (ancestral_step), like EulerAncestral.
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>
#include <span>

#include "diffuse/diffusion/samplers/common.hpp"

namespace diffuse::diffusion {

namespace detail {

// One DPM-Solver-2 step of x from sigma to `to` (> 0): x += (to - sigma) d(x2, mid), with
// x2 = x + (mid - sigma) d(x, sigma) and mid the geometric mean of sigma and `to`. `den`
// holds D(x; sigma) on entry; d and x2 are scratch.
template <class D, class Batch>
void dpm_2_step(D& denoise, TensorView<float, Batch> x, double sigma, double to, TensorView<float, Batch> den,
                TensorView<float, Batch> d, TensorView<float, Batch> x2) {
  const double mid = std::exp(0.5 * (std::log(sigma) + std::log(to)));
  d = (x - den) * static_cast<float>(1.0 / sigma);
  x2 = x + static_cast<float>(mid - sigma) * d;
  call_denoiser(denoise, x2, mid, den);
  x = x + static_cast<float>((to - sigma) / mid) * (x2 - den);
}

}  // namespace detail

/// Second-order ODE sampler with a midpoint step (DPM-Solver-2; k-diffusion's dpm_2).
template <Schedule Sched = KarrasSchedule>
struct Dpm2 {
  Sched schedule{};  ///< the sigma schedule the steps follow
  std::size_t steps = 18;  ///< number of steps (2 steps - 1 denoiser calls)
  double s_churn = 0.0;  ///< EDM's S_churn (0: deterministic)
  double s_tmin = 0.0;  ///< churn only for sigma >= s_tmin
  double s_tmax = std::numeric_limits<double>::infinity();  ///< churn only for sigma <= s_tmax
  double s_noise = 1.0;  ///< std scale of the churn noise

  DIFFUSE_SAMPLER_ENTRY_POINTS

  /// One pass over `sigmas` (descending, ending in 0). x: (N, H, W, C), integrated in place.
  template <class D, class Batch, class Cb>
  void run(D& denoise, TensorView<float, Batch> x, std::span<const double> sigmas, NoiseSource<Batch>& noise,
           Cb& callback) const {
    const std::size_t n = sigmas.size() - 1, b = x.batch();
    Tensor<float, Batch> den(b), d(b), x2(b), eps(s_churn > 0.0 ? b : 0);
    for (std::size_t i = 0; i < n; ++i) {
      const double sigma = detail::churn(sigmas[i], n, s_churn, s_tmin, s_tmax, s_noise, x, eps.view(), noise);
      const double next = sigmas[i + 1];
      detail::call_denoiser(denoise, x, sigma, den.view());
      detail::call_back(callback, i, sigma, x, den.view());
      if (next == sigma) continue;  // a repeated sigma: a step of length 0
      if (next == 0.0) {
        x = den;  // Euler to 0: x + (0 - sigma) (x - D) / sigma
      } else {
        detail::dpm_2_step(denoise, x, sigma, next, den.view(), d.view(), x2.view());
      }
    }
  }
};

/// DPM-Solver-2 steps with ancestral noise (k-diffusion's dpm_2_ancestral).
template <Schedule Sched = KarrasSchedule>
struct Dpm2Ancestral {
  Sched schedule{};  ///< the sigma schedule the steps follow
  std::size_t steps = 18;  ///< number of steps (up to 2 denoiser calls each)
  double eta = 1.0;  ///< DDIM's eta: 0 deterministic (Dpm2), 1 full ancestral noise
  double s_noise = 1.0;  ///< scale of the fresh noise

  DIFFUSE_SAMPLER_ENTRY_POINTS

  /// One pass over `sigmas` (descending, ending in 0). x: (N, H, W, C), integrated in place.
  template <class D, class Batch, class Cb>
  void run(D& denoise, TensorView<float, Batch> x, std::span<const double> sigmas, NoiseSource<Batch>& noise,
           Cb& callback) const {
    const std::size_t n = sigmas.size() - 1, b = x.batch();
    Tensor<float, Batch> den(b), d(b), x2(b), z(eta > 0.0 ? b : 0);
    for (std::size_t i = 0; i < n; ++i) {
      const double sigma = sigmas[i];
      detail::call_denoiser(denoise, x, sigma, den.view());
      detail::call_back(callback, i, sigma, x, den.view());
      if (sigmas[i + 1] == sigma) continue;
      const AncestralStep a = ancestral_step(sigma, sigmas[i + 1], eta);
      if (a.sigma_down == 0.0) {
        x = den;
      } else {
        detail::dpm_2_step(denoise, x, sigma, a.sigma_down, den.view(), d.view(), x2.view());
      }
      if (a.sigma_up > 0.0) {
        noise.draw(z.view());
        x = x + static_cast<float>(s_noise * a.sigma_up) * z;
      }
    }
  }
};

}  // namespace diffuse::diffusion
