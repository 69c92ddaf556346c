// What every sampler shares: the denoiser and callback contracts, the ancestral step
// split, EDM's "churn", and the driver that draws the initial noise and runs a sampler
// over its schedule.
//
// A sampler is an aggregate `Name<Schedule>` with its schedule, its number of steps and
// its own options as public members, e.g. `Heun<KarrasSchedule>{.steps = 18}`, and
//
//   sample(denoise, x, seed, first_image = 0, callback = {})
//       x (N, H, W, C) is overwritten: first with sigma_0 * n (n from NoiseSource), then
//       integrated from sigma_0 down to 0;
//   sample_from(denoise, x, seed, first_image = 0, callback = {})
//       x already holds the images at sigma_0 (the later noise draws are the ones sample()
//       would make, so sample == draw the start + sample_from);
//   run(denoise, x, sigmas, noise, callback)
//       one pass over the given sigmas (descending, ending in 0) with a given NoiseSource.
//
// The denoiser is any callable `denoise(TensorView<const float, Batch> x, float sigma,
// TensorView<float, Batch> out)` writing D(x; sigma) (Precond provides one). The callback
// is called once per step as `callback(step, sigma, x, denoised)` with the step index, the
// noise level the denoiser saw, the current images and their denoised estimate.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <span>
#include <utility>
#include <vector>

#include "diffuse/core/ops.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/diffusion/noise.hpp"
#include "diffuse/diffusion/schedule.hpp"

namespace diffuse::diffusion {

/// The default callback: does nothing.
struct NoCallback {
  /// Ignores its arguments.
  template <class... A>
  void operator()(A&&...) const noexcept {}
};

/// A denoiser for images of shape Batch: denoise(x, sigma, out) writes D(x; sigma) to out.
template <class D, class Batch>
concept Denoiser = requires(D& d, TensorView<const float, Batch> x, float sigma, TensorView<float, Batch> out) {
  d(x, sigma, out);
};

/// The split of a step from sigma to sigma_next into a deterministic part down to sigma_down
/// and fresh noise of std sigma_up (sigma_down^2 + sigma_up^2 = sigma_next^2), with
/// sigma_up = min(sigma_next, eta sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2)):
/// DDIM's noise level for eta (Song et al. 2021) in the variance-exploding view.
struct AncestralStep {
  ///@{
  /// The deterministic step's target and the std of the fresh noise.
  double sigma_down, sigma_up;
  ///@}
};
/// The ancestral split of the step sigma -> sigma_next for `eta` (k-diffusion's
/// get_ancestral_step); eta 0 or sigma_next 0 give {sigma_next, 0}.
inline AncestralStep ancestral_step(double sigma, double sigma_next, double eta = 1.0) {
  if (eta == 0.0 || sigma_next == 0.0) return {sigma_next, 0.0};
  const double up = std::min(
      sigma_next, eta * std::sqrt(std::max(0.0, sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next) /
                                                    (sigma * sigma))));
  return {std::sqrt(std::max(0.0, sigma_next * sigma_next - up * up)), up};
}

namespace detail {

template <class Batch>
using ConstView = TensorView<const float, Batch>;

// Calls denoise(x, sigma, out) with x as a view of const elements.
template <class D, class Batch>
void call_denoiser(D& denoise, TensorView<float, Batch> x, double sigma, TensorView<float, Batch> out) {
  denoise(ConstView<Batch>(x), static_cast<float>(sigma), out);
}

template <class Cb, class Batch>
void call_back(Cb& callback, std::size_t step, double sigma, TensorView<float, Batch> x, TensorView<float, Batch> den) {
  callback(step, sigma, ConstView<Batch>(x), ConstView<Batch>(den));
}

// EDM Algorithm 2, lines 4-6 ("churn"): raises the noise level from sigma to
// sigma_hat = (1 + gamma) sigma, gamma = min(S_churn / steps, sqrt(2) - 1) inside
// [S_tmin, S_tmax], by adding noise of std S_noise sqrt(sigma_hat^2 - sigma^2).
// Returns sigma_hat. `eps` is scratch of x's shape; noise is drawn only when gamma > 0.
template <class Batch>
double churn(double sigma, std::size_t steps, double s_churn, double s_tmin, double s_tmax, double s_noise,
             TensorView<float, Batch> x, TensorView<float, Batch> eps, NoiseSource<Batch>& noise) {
  const double gamma = (s_churn > 0.0 && s_tmin <= sigma && sigma <= s_tmax)
                           ? std::min(s_churn / static_cast<double>(steps), std::numbers::sqrt2 - 1.0)
                           : 0.0;
  if (gamma <= 0.0) return sigma;
  const double sigma_hat = sigma * (1.0 + gamma);
  noise.draw(eps);
  x = x + static_cast<float>(s_noise * std::sqrt(sigma_hat * sigma_hat - sigma * sigma)) * eps;
  return sigma_hat;
}

// The shared body of every sampler's sample() and sample_from(); returns what run() returns.
template <class Sampler, class D, class Batch, class Cb>
decltype(auto) sample_impl(const Sampler& sampler, D& denoise, TensorView<float, Batch> x, std::uint64_t seed,
                 std::uint64_t first_image, Cb& callback, bool draw_start) {
  const std::vector<double> sigmas = sampler.schedule.sigmas(sampler.steps);
  NoiseSource<Batch> noise(seed, first_image, x.batch());
  if (draw_start) {
    noise.draw(x);
    x = x * static_cast<float>(sigmas[0]);
  } else {
    noise.skip(1);
  }
  return sampler.run(denoise, x, std::span<const double>(sigmas), noise, callback);
}

}  // namespace detail

// Each sampler's sample() and sample_from(), written once.
#define DIFFUSE_SAMPLER_ENTRY_POINTS                                                                      \
  /** Draws x = sigma_0 n (per-image streams of `seed` from `first_image`) and integrates it to 0. */   \
  template <class D, class Batch, class Cb = NoCallback>                                                 \
  void sample(D&& denoise, TensorView<float, Batch> x, std::uint64_t seed, std::uint64_t first_image = 0, \
              Cb&& callback = {}) const {                                                                \
    detail::sample_impl(*this, denoise, x, seed, first_image, callback, true);                           \
  }                                                                                                      \
  /** Integrates x, already at sigma_0, to 0 (the later noise is the one sample() would draw). */       \
  template <class D, class Batch, class Cb = NoCallback>                                                 \
  void sample_from(D&& denoise, TensorView<float, Batch> x, std::uint64_t seed, std::uint64_t first_image = 0, \
                   Cb&& callback = {}) const {                                                           \
    detail::sample_impl(*this, denoise, x, seed, first_image, callback, false);                          \
  }

}  // namespace diffuse::diffusion
