// Per-image random numbers for training and sampling.
//
// Reproducibility rule of the diffusion layer: every random number that belongs to an
// image comes from a Philox generator keyed by (seed, image index), never from a generator
// shared by the batch. The noise of image i therefore does not depend on how a batch is
// split (8 images at once, or 3 + 5 with first indices 0 and 3) nor on the thread count.
//
//   NoiseSource<Batch>      sampling: generator i = Generator(seed, first_image + i); each
//                           draw() advances every image's generator by one image of normals,
//                           draw_item(i, ...) image i's alone (samplers whose images step apart)
//   draw_training_noise()   training: image i of step s uses Generator(seed, first_image + i,
//                           s << 32): one block for its sigma, then one image of normals
//
// This file holds no schedule or sampler logic.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/core/parallel.hpp"
#include "diffuse/core/random.hpp"
#include "diffuse/core/tensor.hpp"

namespace diffuse::diffusion {

/// One uniform number in (0, 1), from one whole block of `g` (double precision).
inline double draw_uniform(Generator& g) noexcept {
  return diffuse::detail::open_unit(g.block(g.take(4))[0]);
}

/// One standard normal number (Box-Muller), from one whole block of `g`.
inline double draw_normal(Generator& g) noexcept {
  const auto w = g.block(g.take(4));
  const double r = std::sqrt(-2.0 * std::log(diffuse::detail::open_unit(w[0])));
  return r * std::cos(2.0 * std::numbers::pi * diffuse::detail::open_unit(w[1]));
}

/// Standard normal noise for a batch of images, one counter-based stream per image.
/// Image i of the batch is image `first_image + i` of the whole run: its numbers are the
/// same in any batch split.
template <class Batch>
class NoiseSource {
 public:
  /// Blocks of a generator one draw of one image uses.
  static constexpr std::uint64_t blocks_per_draw = (Batch::item_size + 3) / 4;

  /// Streams first_image, ..., first_image + batch - 1 of `seed`, each at its first draw.
  NoiseSource(std::uint64_t seed, std::uint64_t first_image, std::size_t batch) : seed_(seed), first_(first_image) {
    gens_.reserve(batch);
    for (std::size_t i = 0; i < batch; ++i) gens_.emplace_back(seed, first_image + i, 0);
  }

  std::size_t batch() const noexcept { return gens_.size(); }  ///< Number of images (N).
  std::uint64_t seed() const noexcept { return seed_; }         ///< The seed of every stream.
  std::uint64_t first_image() const noexcept { return first_; }  ///< The run's index of image 0.

  /// Fills `out` (N, H, W, C) with the next N(0, I) draw of every image.
  void draw(TensorView<float, Batch> out) {
    if (out.batch() != gens_.size())
      throw ShapeError("diffuse::diffusion::NoiseSource: batch " + std::to_string(out.batch()) +
                       " differs from the source's " + std::to_string(gens_.size()));
    parallel_for_items(gens_.size(), Batch::item_size, [&](std::size_t i) { fill_normal(out.item(i), gens_[i]); });
    update_device(out.data(), out.size());  // drawn on the host: N images per step
  }

  /// Fills `out` (one image, H x W x C values) with the next N(0, I) draw of image i alone,
  /// for samplers whose images take different numbers of steps (an image's k-th draw is
  /// the same either way). Throws ShapeError for i outside the batch or an `out` that is
  /// not one image.
  template <class Item>
  void draw_item(std::size_t i, Item&& out) {
    if (i >= gens_.size() || out.size() != Batch::item_size)
      throw ShapeError("diffuse::diffusion::NoiseSource::draw_item: image " + std::to_string(i) + " of a batch of " +
                       std::to_string(gens_.size()) + ", " + std::to_string(out.size()) + " values for an image of " +
                       std::to_string(Batch::item_size));
    fill_normal(out, gens_[i]);
    update_device(out.data(), out.size());
  }

  /// Skips `draws` draws (as if draw() had been called that many times).
  void skip(std::uint64_t draws) noexcept {
    for (auto& g : gens_) g.set_position(g.position() + draws * blocks_per_draw);
  }

 private:
  std::uint64_t seed_, first_;
  std::vector<Generator> gens_;
};

/// Draws the training noise of a batch: for image i, sigma[i] from the loss's training
/// distribution and noise.item(i) ~ N(0, I) (unit variance; the loss scales it by sigma).
/// Image i uses Generator(seed, first_image + i, step << 32) (2^32 blocks per step and
/// image, far more than an image needs), so it does not depend on the batch split.
/// Loss needs `double training_sigma(Generator&) const` (see loss.hpp).
template <class Loss, class Batch>
void draw_training_noise(const Loss& loss, std::uint64_t seed, std::uint64_t step, std::uint64_t first_image,
                         std::span<float> sigma /*[N]*/, TensorView<float, Batch> noise /*(N, H, W, C)*/) {
  if (sigma.size() != noise.batch())
    throw ShapeError("diffuse::diffusion::draw_training_noise: " + std::to_string(sigma.size()) + " sigmas for " +
                     std::to_string(noise.batch()) + " images");
  parallel_for_items(noise.batch(), Batch::item_size, [&](std::size_t i) {
    Generator g(seed, first_image + i, step << 32);
    sigma[i] = static_cast<float>(loss.training_sigma(g));
    fill_normal(noise.item(i), g);
  });
}

}  // namespace diffuse::diffusion
