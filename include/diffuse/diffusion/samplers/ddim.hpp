// DDIM (Song, Meng & Ermon 2021) in the variance-exploding view x = y + sigma n that the
// rest of the library uses: with the noise estimate eps = (x - D(x; sigma)) / sigma,
//   x_next = D + sigma_down eps + sigma_up z,  (sigma_down, sigma_up) = ancestral_step(sigma, sigma_next, eta).
// This is DDIM's update of x / sqrt(alpha_bar) with sigma^2 = (1 - alpha_bar) / alpha_bar.
// eta = 0 (the default) is deterministic and equal, up to rounding, to an Euler step
// (EDM section 3); eta = 1 adds DDPM's ancestral noise. It runs on any schedule; DDIM's
// own is DdpmSigmas. One denoiser call per step.
#pragma once

#include <cstddef>
#include <span>

#include "diffuse/diffusion/samplers/common.hpp"

namespace diffuse::diffusion {

/// DDIM sampler with its eta.
template <Schedule Sched = DdpmSigmas>
struct Ddim {
  Sched schedule{};
  std::size_t steps = 50;
  double eta = 0.0;
  double s_noise = 1.0;

  DIFFUSE_SAMPLER_ENTRY_POINTS

  template <class D, class Image, class Cb>
  void run(D& denoise, TensorView<float, Image> x, std::span<const double> sigmas, NoiseSource<Image>& noise,
           Cb& callback) const {
    const std::size_t n = sigmas.size() - 1;
    Tensor<float, Image> den(x.batch()), z(eta > 0.0 ? x.batch() : 0);
    for (std::size_t i = 0; i < n; ++i) {
      const double sigma = sigmas[i];
      detail::call_denoiser(denoise, x, sigma, den.view());
      detail::call_back(callback, i, sigma, x, den.view());
      const AncestralStep a = ancestral_step(sigma, sigmas[i + 1], eta);
      x = den + static_cast<float>(a.sigma_down / sigma) * (x - den);
      if (a.sigma_up > 0.0) {
        noise.draw(z.view());
        x = x + static_cast<float>(s_noise * a.sigma_up) * z;
      }
    }
  }
};

}  // namespace diffuse::diffusion
