// Structural similarity (SSIM; Wang, Bovik, Sheikh, Simoncelli 2004) between two images.
//
// The standard form: an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03,
// L the data range (2 for images in [-1, 1]); local means, variances and covariance
// are Gaussian-weighted; the SSIM map is averaged over the positions where the window
// fits entirely inside the image ("valid"), and over channels.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <vector>

namespace diffuse::metrics {

struct SsimOptions {
  double data_range = 2.0;  ///< L: max - min of the pixel scale ([-1, 1] by default)
  double k1 = 0.01, k2 = 0.03;
  double sigma = 1.5;
  int window = 11;
};

/// Mean SSIM of two images a, b of h x w x c values (row-major, channels last).
inline double ssim(const float* a, const float* b, std::size_t h, std::size_t w, std::size_t c,
                   const SsimOptions& o = {}) {
  const std::size_t win = static_cast<std::size_t>(o.window);
  if (h < win || w < win)
    throw std::invalid_argument("diffuse::metrics::ssim: images must be at least " + std::to_string(win) + "x" +
                                std::to_string(win));
  // Normalised 1-D Gaussian; the 2-D window is its outer product, so filtering is separable.
  std::vector<double> g(win);
  double gs = 0;
  for (std::size_t i = 0; i < win; ++i) {
    const double d = static_cast<double>(i) - static_cast<double>(win - 1) / 2;
    g[i] = std::exp(-d * d / (2 * o.sigma * o.sigma));
    gs += g[i];
  }
  for (double& v : g) v /= gs;
  const double c1 = (o.k1 * o.data_range) * (o.k1 * o.data_range);
  const double c2 = (o.k2 * o.data_range) * (o.k2 * o.data_range);
  const std::size_t oh = h - win + 1, ow = w - win + 1;
  // Horizontal pass of the five moments (a, b, a^2, b^2, ab) for each row, then vertical.
  std::vector<std::array<double, 5>> rows(h * ow);
  double total = 0;
  for (std::size_t ch = 0; ch < c; ++ch) {
    for (std::size_t y = 0; y < h; ++y)
      for (std::size_t x = 0; x < ow; ++x) {
        std::array<double, 5> m{};
        for (std::size_t k = 0; k < win; ++k) {
          const double va = a[(y * w + x + k) * c + ch], vb = b[(y * w + x + k) * c + ch];
          m[0] += g[k] * va;
          m[1] += g[k] * vb;
          m[2] += g[k] * va * va;
          m[3] += g[k] * vb * vb;
          m[4] += g[k] * va * vb;
        }
        rows[y * ow + x] = m;
      }
    for (std::size_t y = 0; y < oh; ++y)
      for (std::size_t x = 0; x < ow; ++x) {
        std::array<double, 5> m{};
        for (std::size_t k = 0; k < win; ++k)
          for (int j = 0; j < 5; ++j) m[j] += g[k] * rows[(y + k) * ow + x][j];
        const double va = m[2] - m[0] * m[0], vb = m[3] - m[1] * m[1], cov = m[4] - m[0] * m[1];
        total += ((2 * m[0] * m[1] + c1) * (2 * cov + c2)) /
                 ((m[0] * m[0] + m[1] * m[1] + c1) * (va + vb + c2));
      }
  }
  return total / static_cast<double>(oh * ow * c);
}

}  // namespace diffuse::metrics
