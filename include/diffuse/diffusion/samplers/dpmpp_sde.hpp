// The DPM-Solver++ SDE samplers of k-diffusion, with Brownian noise (brownian.hpp) over
// the schedule's range, keyed by the run's (seed, image):
//
// DpmPp2MSde (sample_dpmpp_2m_sde; Lu et al. 2022, arXiv 2211.01095, the SDE form of
// DPM-Solver++(2M)): with h = log(sigma / sigma_next) and eta h the part of the step
// taken as noise,
//   x <- (sigma_next / sigma) e^{-eta h} x + (1 - e^{-(1 + eta) h}) D_i + correction
//        + sigma_next sqrt(1 - e^{-2 eta h}) z,
// correction = (1 - e^{-(1+eta)h}) / (2r) (D_i - D_{i-1}) ("midpoint") or
// (1 - (1 - e^{-(1+eta)h}) / ((1+eta)h)) / r (D_i - D_{i-1}) ("heun"), r = h_prev / h.
// One denoiser call per step; eta = 0 is DpmPp2M (midpoint).
//
// DpmPp3MSde (sample_dpmpp_3m_sde): the third-order multistep version (the two last
// estimates give first and second differences with the phi_2, phi_3 weights).
//
// DpmPpSde (sample_dpmpp_sde): DPM-Solver++ single-step of order 2 with an SDE substep
// at the point r = 1/2 of the step in log sigma; two denoiser calls per step.
//
// The step to sigma = 0 returns D (x = D(x; sigma)); a repeated sigma is a step of length 0.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>

#include "diffuse/diffusion/brownian.hpp"
#include "diffuse/diffusion/samplers/common.hpp"

namespace diffuse::diffusion {

namespace detail {

// The Brownian noise of a run over `sigmas`: the range of its positive sigmas, the run's
// seed and images (from the NoiseSource). Null range (one positive sigma): a unit range.
template <class Batch>
BrownianNoise<Batch> brownian_for(std::span<const double> sigmas, const NoiseSource<Batch>& noise) {
  double lo = 0, hi = 0;
  for (double s : sigmas)
    if (s > 0) lo = lo == 0 ? s : std::min(lo, s), hi = std::max(hi, s);
  if (!(lo < hi)) hi = lo + 1.0;
  return BrownianNoise<Batch>(noise.seed(), noise.first_image(), noise.batch(), lo, hi);
}

}  // namespace detail

/// Second-order multistep SDE sampler with Brownian noise (DPM-Solver++(2M) SDE).
template <Schedule Sched = KarrasSchedule>
struct DpmPp2MSde {
  Sched schedule{};  ///< the sigma schedule the steps follow
  std::size_t steps = 18;  ///< number of steps, one denoiser call each
  double eta = 1.0;  ///< share of each step taken as noise (0: DpmPp2M)
  double s_noise = 1.0;  ///< scale of the noise
  bool heun = false;  ///< k-diffusion's solver_type "heun" instead of "midpoint"

  DIFFUSE_SAMPLER_ENTRY_POINTS

  /// One pass over `sigmas` (descending, ending in 0). x: (N, H, W, C), integrated in place.
  template <class D, class Batch, class Cb>
  void run(D& denoise, TensorView<float, Batch> x, std::span<const double> sigmas, NoiseSource<Batch>& noise,
           Cb& callback) const {
    const std::size_t n = sigmas.size() - 1, b = x.batch();
    Tensor<float, Batch> den(b), old(b), z(eta > 0.0 ? b : 0);
    BrownianNoise<Batch> brownian = detail::brownian_for(sigmas, noise);
    double h_last = 0.0;  // 0: no earlier step
    for (std::size_t i = 0; i < n; ++i) {
      const double sigma = sigmas[i], next = sigmas[i + 1];
      detail::call_denoiser(denoise, x, sigma, den.view());
      detail::call_back(callback, i, sigma, x, den.view());
      if (next == sigma) continue;
      if (next == 0.0) {
        x = den;
      } else {
        const double h = std::log(sigma / next), eta_h = eta * h;
        const double keep = -std::expm1(-h - eta_h);  // 1 - e^{-(1 + eta) h}
        x = static_cast<float>(next / sigma * std::exp(-eta_h)) * x + static_cast<float>(keep) * den;
        if (h_last > 0.0) {
          const double r = h_last / h;
          const double c = heun ? (1.0 - keep / (h + eta_h)) / r : 0.5 * keep / r;
          x = x + static_cast<float>(c) * (den - old);
        }
        if (eta > 0.0) {
          brownian.draw(sigma, next, z.view());
          x = x + static_cast<float>(next * std::sqrt(-std::expm1(-2.0 * eta_h)) * s_noise) * z;
        }
        h_last = h;
      }
      std::swap(den, old);
    }
  }
};

/// Third-order multistep SDE sampler with Brownian noise (DPM-Solver++(3M) SDE).
template <Schedule Sched = KarrasSchedule>
struct DpmPp3MSde {
  Sched schedule{};  ///< the sigma schedule the steps follow
  std::size_t steps = 18;  ///< number of steps, one denoiser call each
  double eta = 1.0;  ///< share of each step taken as noise (0: deterministic DPM-Solver++(3M))
  double s_noise = 1.0;  ///< scale of the noise

  DIFFUSE_SAMPLER_ENTRY_POINTS

  /// One pass over `sigmas` (descending, ending in 0). x: (N, H, W, C), integrated in place.
  template <class D, class Batch, class Cb>
  void run(D& denoise, TensorView<float, Batch> x, std::span<const double> sigmas, NoiseSource<Batch>& noise,
           Cb& callback) const {
    const std::size_t n = sigmas.size() - 1, b = x.batch();
    Tensor<float, Batch> den(b), d1(b), d2(b), z(eta > 0.0 ? b : 0);  // d1, d2: the last two estimates
    BrownianNoise<Batch> brownian = detail::brownian_for(sigmas, noise);
    double h1 = 0.0, h2 = 0.0;  // the last two steps' h (0: none)
    for (std::size_t i = 0; i < n; ++i) {
      const double sigma = sigmas[i], next = sigmas[i + 1];
      detail::call_denoiser(denoise, x, sigma, den.view());
      detail::call_back(callback, i, sigma, x, den.view());
      if (next == sigma) continue;
      double h = 0.0;
      if (next == 0.0) {
        x = den;
      } else {
        h = std::log(sigma / next);
        const double h_eta = h * (eta + 1.0);
        x = static_cast<float>(std::exp(-h_eta)) * x + static_cast<float>(-std::expm1(-h_eta)) * den;
        const double phi2 = std::expm1(-h_eta) / h_eta + 1.0;
        if (h2 > 0.0) {
          const double r0 = h1 / h, r1 = h2 / h;
          const double phi3 = phi2 / h_eta - 0.5;
          // d1_0 = (D - D_1) / r0, d1_1 = (D_1 - D_2) / r1,
          // x += phi2 (d1_0 + (d1_0 - d1_1) r0 / (r0 + r1)) - phi3 (d1_0 - d1_1) / (r0 + r1)
          const double a0 = 1.0 / r0, a1 = 1.0 / r1, k = 1.0 / (r0 + r1);
          const double c_d = phi2 * a0 + phi2 * a0 * r0 * k - phi3 * a0 * k;         // weight of D
          const double c_1 = -phi2 * a0 - phi2 * r0 * k * (a0 + a1) + phi3 * k * (a0 + a1);  // of D_1
          const double c_2 = phi2 * r0 * k * a1 - phi3 * k * a1;                     // of D_2
          x = x + static_cast<float>(c_d) * den + static_cast<float>(c_1) * d1 + static_cast<float>(c_2) * d2;
        } else if (h1 > 0.0) {
          const double r = h1 / h;
          x = x + static_cast<float>(phi2 / r) * (den - d1);
        }
        if (eta > 0.0) {
          brownian.draw(sigma, next, z.view());
          x = x + static_cast<float>(next * std::sqrt(-std::expm1(-2.0 * h * eta)) * s_noise) * z;
        }
      }
      std::swap(d2, d1);  // d2 <- D_1, d1 <- D (den's buffer is reused)
      std::swap(d1, den);
      h2 = h1;
      h1 = h;
    }
  }
};

/// Second-order single-step SDE sampler with Brownian noise (k-diffusion's dpmpp_sde).
template <Schedule Sched = KarrasSchedule>
struct DpmPpSde {
  Sched schedule{};  ///< the sigma schedule the steps follow
  std::size_t steps = 18;  ///< number of steps (2 denoiser calls each but the last)
  double eta = 1.0;  ///< ancestral noise of each substep (0: deterministic)
  double s_noise = 1.0;  ///< scale of the noise
  double r = 0.5;  ///< where the substep lands, as a share of the step in log sigma

  DIFFUSE_SAMPLER_ENTRY_POINTS

  /// One pass over `sigmas` (descending, ending in 0). x: (N, H, W, C), integrated in place.
  template <class D, class Batch, class Cb>
  void run(D& denoise, TensorView<float, Batch> x, std::span<const double> sigmas, NoiseSource<Batch>& noise,
           Cb& callback) const {
    const std::size_t n = sigmas.size() - 1, b = x.batch();
    Tensor<float, Batch> den(b), den2(b), x2(b), z(eta > 0.0 ? b : 0);
    BrownianNoise<Batch> brownian = detail::brownian_for(sigmas, noise);
    for (std::size_t i = 0; i < n; ++i) {
      const double sigma = sigmas[i], next = sigmas[i + 1];
      detail::call_denoiser(denoise, x, sigma, den.view());
      detail::call_back(callback, i, sigma, x, den.view());
      if (next == sigma) continue;
      if (next == 0.0) {
        x = den;
        continue;
      }
      const double h = std::log(sigma / next);
      const double s = sigma * std::exp(-r * h);  // the substep's sigma
      const double fac = 1.0 / (2.0 * r);
      // Substep: DPM-Solver++ first order to the ancestral target of s, plus its noise.
      const AncestralStep a1 = ancestral_step(sigma, s, eta);
      x2 = static_cast<float>(a1.sigma_down / sigma) * x + static_cast<float>(1.0 - a1.sigma_down / sigma) * den;
      if (a1.sigma_up > 0.0) {
        brownian.draw(sigma, s, z.view());
        x2 = x2 + static_cast<float>(s_noise * a1.sigma_up) * z;
      }
      detail::call_denoiser(denoise, x2.view(), s, den2.view());
      // The whole step with the blended estimate, to the ancestral target of sigma_next.
      const AncestralStep a2 = ancestral_step(sigma, next, eta);
      const double keep = 1.0 - a2.sigma_down / sigma;
      x = static_cast<float>(a2.sigma_down / sigma) * x + static_cast<float>(keep * (1.0 - fac)) * den +
          static_cast<float>(keep * fac) * den2;
      if (a2.sigma_up > 0.0) {
        brownian.draw(sigma, next, z.view());
        x = x + static_cast<float>(s_noise * a2.sigma_up) * z;
      }
    }
  }
};

}  // namespace diffuse::diffusion
