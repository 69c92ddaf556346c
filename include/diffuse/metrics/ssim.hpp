// Structural similarity (SSIM; Wang, Bovik, Sheikh, Simoncelli 2004) between two images.
//
// The standard form: an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03,
// L the data range (2 for images in [-1, 1]); local means, variances and covariance
// are Gaussian-weighted; the SSIM map is averaged over the positions where the window
// fits entirely inside the image ("valid"), and over channels.
//
// metrics::ssim takes two views of one image each, (H, W, C) with static extents;
// detail::ssim is the same computation on raw pointers with run-time extents.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "diffuse/core/tensor.hpp"

/// Image quality measures: SSIM, the Fréchet distance and its feature network.
namespace diffuse::metrics {

/// The constants of SSIM (the standard ones by default).
struct SsimOptions {
  double data_range = 2.0;  ///< L: max - min of the pixel scale ([-1, 1] by default).
  double k1 = 0.01;         ///< C1 = (k1 L)^2 keeps the luminance term finite.
  double k2 = 0.03;         ///< C2 = (k2 L)^2 keeps the contrast-structure term finite.
  double sigma = 1.5;       ///< Standard deviation of the Gaussian window, in pixels.
  int window = 11;          ///< Side of the square window, in pixels.
};

namespace detail {

// Mean SSIM of two images a, b of h x w x c values (row-major, channels last).
template <class T>
double ssim(const T* a, const T* b, std::size_t h, std::size_t w, std::size_t c, const SsimOptions& o = {}) {
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

}  // namespace detail

/// Mean SSIM of two images of a size known only at run time: a and b hold h x w x c
/// values each (row-major, channels last). Throws std::invalid_argument when a span's
/// size is not h * w * c or the window does not fit.
template <class T>
double ssim(std::span<const T> a, std::span<const T> b, std::size_t h, std::size_t w, std::size_t c,
            const SsimOptions& o = {}) {
  if (a.size() != h * w * c || b.size() != h * w * c)
    throw std::invalid_argument("diffuse::metrics::ssim: " + std::to_string(a.size()) + " and " +
                                std::to_string(b.size()) + " values for images of " + std::to_string(h) + "x" +
                                std::to_string(w) + "x" + std::to_string(c));
  return detail::ssim(a.data(), b.data(), h, w, c, o);
}

/// Mean SSIM of two images a, b: (H, W, C) views, channels last, of the same shape and
/// element type (const or not). 1 for identical images; symmetric in a and b. Throws
/// std::invalid_argument when the window does not fit (H or W below o.window).
template <class A, class SA, class B, class SB>
double ssim(TensorView<A, SA> a, TensorView<B, SB> b, const SsimOptions& o = {}) {
  static_assert(SA::rank == 3 && !SA::dynamic_batch,
                "diffuse::metrics::ssim: takes one image, a view of shape Shape<H, W, C> (e.g. x.item(i))");
  static_assert(std::is_same_v<SA, SB>, "diffuse::metrics::ssim: the two images differ in shape");
  static_assert(std::is_same_v<std::remove_const_t<A>, std::remove_const_t<B>>,
                "diffuse::metrics::ssim: the two images differ in element type");
  return detail::ssim<std::remove_const_t<A>>(a.data(), b.data(), SA::extents[0], SA::extents[1], SA::extents[2], o);
}

}  // namespace diffuse::metrics
