// Brownian noise for SDE samplers (k-diffusion's BrownianTreeNoiseSampler): each image has
// its own Brownian motion W over [sigma_min, sigma_max], and a step from sigma to
// sigma_next takes the noise (W(sigma_next) - W(sigma)) / sqrt(|sigma_next - sigma|), a
// standard normal draw. Disjoint steps get independent noise, and a finer schedule splits
// the same increments, so that more steps converge to the same SDE solution instead of
// drawing new noise (what plain per-step noise does).
//
// W is a "virtual Brownian tree" (Li et al. 2020, "Scalable Gradients for Stochastic
// Differential Equations", as torchsde's BrownianTree): W(sigma_min) = 0, W(sigma_max) =
// sqrt(range) z_0, and the midpoint of an interval [a, b] is the Brownian bridge
// (W(a) + W(b)) / 2 + sqrt((b - a) / 4) z_node; W at any sigma is found by `depth`
// bisections (node k has children 2k, 2k + 1), then linear interpolation in the last
// interval (the bridge's mean). Every z is counter-based, keyed by (seed, image, node), so
// an image's noise depends on neither the batch split nor the thread count.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/core/parallel.hpp"
#include "diffuse/core/random.hpp"
#include "diffuse/core/tensor.hpp"

namespace diffuse::diffusion {

/// Per-image Brownian noise over [sigma_min, sigma_max] (see the top of this header).
template <class Batch>
class BrownianNoise {
 public:
  /// The generator streams of image i are first_image + i with this bit set (apart from
  /// NoiseSource's streams first_image + i).
  static constexpr std::uint64_t stream_bit = std::uint64_t{1} << 63;

  /// Images first_image .. first_image + batch - 1 of `seed`, on [sigma_min, sigma_max]
  /// (0 < sigma_min < sigma_max), resolved to (sigma_max - sigma_min) / 2^depth. Throws
  /// std::invalid_argument for an empty range.
  BrownianNoise(std::uint64_t seed, std::uint64_t first_image, std::size_t batch, double sigma_min, double sigma_max,
                int depth = 24)
      : seed_(seed), first_(first_image), lo_(sigma_min), hi_(sigma_max), depth_(depth), cache_t_(batch, {-1.0, -1.0}),
        cache_(2 * batch * n_), wa_(batch * n_), wb_(batch * n_), z_(batch * n_), prev_(batch * n_),
        next_(batch, 0) {
    if (!(sigma_min < sigma_max) || !std::isfinite(sigma_max) || depth < 0 || depth > 40)
      throw std::invalid_argument("diffuse::diffusion::BrownianNoise: needs sigma_min < sigma_max, finite, and depth "
                                  "0-40 (got " + std::to_string(sigma_min) + ", " + std::to_string(sigma_max) + ")");
  }

  /// out (N, H, W, C) = (W(sigma_next) - W(sigma)) / sqrt(|sigma_next - sigma|) for every
  /// image: N(0, I); sigmas outside the range are clamped to it. Throws std::invalid_argument
  /// when sigma == sigma_next (no step, no noise).
  void draw(double sigma, double sigma_next, TensorView<float, Batch> out) {
    if (out.batch() != cache_t_.size()) throw ShapeError("diffuse::diffusion::BrownianNoise: another batch");
    sigma = std::clamp(sigma, lo_, hi_);
    sigma_next = std::clamp(sigma_next, lo_, hi_);
    if (sigma == sigma_next)
      throw std::invalid_argument("diffuse::diffusion::BrownianNoise::draw: an empty step (the same sigma twice)");
    const auto scale = static_cast<float>(1.0 / std::sqrt(std::abs(sigma_next - sigma)));
    parallel_for_items(out.batch(), n_ * depth_, [&](std::size_t i) {
      const float* w0 = value(i, sigma);
      float* a = prev_.data() + i * n_;
      std::copy_n(w0, n_, a);  // the next value() may overwrite its cache slot
      const float* w1 = value(i, sigma_next);
      float* o = out.data() + i * n_;
      for (std::size_t k = 0; k < n_; ++k) o[k] = (w1[k] - a[k]) * scale;
    });
    update_device(out.data(), out.size());  // drawn on the host
  }

 private:
  static constexpr std::size_t n_ = Batch::item_size;

  // The standard normal vector of `node` for image i, into z.
  void normals(std::size_t i, std::uint64_t node, float* z) const {
    Generator g(seed_, (first_ + i) | stream_bit, node * ((n_ + 3) / 4));
    fill_normal(TensorView<float, Batch>(z, 1), g);  // one image
  }

  // W(t) of image i: from the cache (the last two values asked for), else by bisection.
  const float* value(std::size_t i, double t) {
    for (int c = 0; c < 2; ++c)
      if (cache_t_[i][c] == t) return cache_.data() + (2 * i + c) * n_;
    const int c = next_[i];
    next_[i] = 1 - c;
    cache_t_[i][c] = t;
    float* w = cache_.data() + (2 * i + c) * n_;
    float *wa = wa_.data() + i * n_, *wb = wb_.data() + i * n_, *z = z_.data() + i * n_;
    double a = lo_, b = hi_;
    std::fill_n(wa, n_, 0.f);
    normals(i, 0, wb);
    const auto root = static_cast<float>(std::sqrt(hi_ - lo_));
    for (std::size_t k = 0; k < n_; ++k) wb[k] *= root;
    std::uint64_t node = 1;
    for (int level = 0; level < depth_; ++level) {
      const double m = 0.5 * (a + b);
      normals(i, node, z);
      const auto s = static_cast<float>(std::sqrt(0.25 * (b - a)));
      float* side = t < m ? wb : wa;  // the end that moves to the midpoint
      for (std::size_t k = 0; k < n_; ++k) side[k] = 0.5f * (wa[k] + wb[k]) + s * z[k];
      if (t < m) {
        b = m;
        node = 2 * node;
      } else {
        a = m;
        node = 2 * node + 1;
      }
    }
    const auto f = static_cast<float>((t - a) / (b - a));
    for (std::size_t k = 0; k < n_; ++k) w[k] = wa[k] + f * (wb[k] - wa[k]);
    return w;
  }

  std::uint64_t seed_, first_;
  double lo_, hi_;
  int depth_;
  std::vector<std::array<double, 2>> cache_t_;  // per image: the sigmas of the two cached values
  std::vector<float> cache_, wa_, wb_, z_, prev_;
  std::vector<int> next_;  // per image: the cache slot to overwrite next
};

}  // namespace diffuse::diffusion
