// A Gaussian mixture in two dimensions whose exact denoiser is known in closed form,
// the ground truth of the sampler tests (no network needed).
//
// Data: y ~ sum_k w_k N(mu_k, diag(v_k)). Noisy: x = y + sigma n. Then
// x ~ sum_k w_k N(mu_k, diag(v_k + sigma^2)), and the ideal denoiser is the posterior mean
//   D(x; sigma) = sum_k r_k(x) (mu_k + v_k / (v_k + sigma^2) (x - mu_k)),
// with responsibilities r_k proportional to w_k N(x; mu_k, diag(v_k + sigma^2)).
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>

#include <diffuse/tensor.hpp>

namespace diffuse::testing {

using Point = Shape<dyn, 1, 1, 2>;  // N, H, W, C: one 2-D point per "image"

struct Mixture {
  static constexpr std::size_t K = 3;
  std::array<double, K> w{0.5, 0.3, 0.2};
  std::array<std::array<double, 2>, K> mu{{{-2.0, 0.0}, {2.0, 1.0}, {0.5, -3.0}}};
  std::array<std::array<double, 2>, K> var{{{0.25, 0.36}, {0.16, 0.25}, {0.36, 0.16}}};

  // Posterior mean of y given x = y + sigma n, in double.
  std::array<double, 2> denoise(double x0, double x1, double sigma) const {
    std::array<double, K> logp{};
    double top = -std::numeric_limits<double>::infinity();
    const double s2 = sigma * sigma;
    const double x[2] = {x0, x1};
    for (std::size_t k = 0; k < K; ++k) {
      double lp = std::log(w[k]);
      for (int d = 0; d < 2; ++d) {
        const double v = var[k][d] + s2, e = x[d] - mu[k][d];
        lp += -0.5 * e * e / v - 0.5 * std::log(v);
      }
      logp[k] = lp;
      top = std::max(top, lp);
    }
    double z = 0.0, out0 = 0.0, out1 = 0.0;
    for (std::size_t k = 0; k < K; ++k) {
      const double r = std::exp(logp[k] - top);
      z += r;
      out0 += r * (mu[k][0] + var[k][0] / (var[k][0] + s2) * (x0 - mu[k][0]));
      out1 += r * (mu[k][1] + var[k][1] / (var[k][1] + s2) * (x1 - mu[k][1]));
    }
    return {out0 / z, out1 / z};
  }

  // The component a clean point most likely came from.
  std::size_t component(double x0, double x1) const {
    std::size_t best = 0;
    double top = -std::numeric_limits<double>::infinity();
    for (std::size_t k = 0; k < K; ++k) {
      double lp = std::log(w[k]);
      const double x[2] = {x0, x1};
      for (int d = 0; d < 2; ++d) {
        const double e = x[d] - mu[k][d];
        lp += -0.5 * e * e / var[k][d] - 0.5 * std::log(var[k][d]);
      }
      if (lp > top) top = lp, best = k;
    }
    return best;
  }
};

/// The exact denoiser of a Mixture as a sampler's denoiser; counts its calls.
struct MixtureDenoiser {
  const Mixture* m;
  std::size_t calls = 0;
  void operator()(TensorView<const float, Point> x, float sigma, TensorView<float, Point> out) {
    ++calls;
    const float* in = x.data();
    float* o = out.data();
    const auto n = static_cast<std::ptrdiff_t>(x.batch());
    DIFFUSE_OMP(parallel for schedule(static) if(n >= 4096))
    for (std::ptrdiff_t i = 0; i < n; ++i) {
      const auto d = m->denoise(in[2 * i], in[2 * i + 1], sigma);
      o[2 * i] = static_cast<float>(d[0]);
      o[2 * i + 1] = static_cast<float>(d[1]);
    }
  }
  // One sigma per point (DpmAdaptive).
  void operator()(TensorView<const float, Point> x, std::span<const float> sigma, TensorView<float, Point> out) {
    ++calls;
    for (std::size_t i = 0; i < x.batch(); ++i) {
      const auto d = m->denoise(x.data()[2 * i], x.data()[2 * i + 1], sigma[i]);
      out.data()[2 * i] = static_cast<float>(d[0]);
      out.data()[2 * i + 1] = static_cast<float>(d[1]);
    }
  }
};

}  // namespace diffuse::testing
