// End to end: edm-tiny trained on three fixed images memorises them. The deterministic
// evaluation loss falls far below its value at initialisation, and the 18-step Heun
// sampler then draws images that lie close to a training image (not between them, not
// mosaics of them), and draws each of the three.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <diffuse/diffusion/precond.hpp>
#include <diffuse/diffusion/sampler.hpp>
#include <diffuse/train/evaluate.hpp>
#include <diffuse/train/trainer.hpp>
#include <diffuse/unet.hpp>

namespace {

using namespace diffuse;
using Image = Shape<dyn, 28, 28, 1>;
using Model = diffusion::EDMPrecond<nn::UNet<nn::edm_tiny>>;
using Images = train::TensorImages<28, 28, 1>;

constexpr std::size_t kImages = 3;
constexpr std::uint64_t kSteps = 1500;  // about 65 s on two cores (AVX-512)

// Pixel (y, x) of training image k, +1 on -1: vertical bars, horizontal bars, a
// checkerboard. Each differs from the others in half of its pixels, and in its local
// texture everywhere, which a small convolutional network tells apart early. (Centred
// shapes such as a disc, a frame and a cross differ only in their middle, and edm-tiny
// long keeps drawing mosaics of them.)
float pattern(std::size_t k, std::size_t y, std::size_t x) {
  const bool on = k == 0 ? x / 4 % 2 == 0 : k == 1 ? y / 4 % 2 == 0 : (x / 7 + y / 7) % 2 == 0;
  return on ? 1.f : -1.f;
}

// The three images, each repeated `copies` times (image i is pattern i % 3).
Images training_images(std::size_t copies) {
  Tensor<float, Image> t(kImages * copies);
  for (std::size_t i = 0; i < t.batch(); ++i)
    for (std::size_t y = 0; y < 28; ++y)
      for (std::size_t x = 0; x < 28; ++x) t(i, y, x, 0) = pattern(i % kImages, y, x);
  return Images(std::move(t));
}

// Euclidean distance between image i of a and image j of b.
double distance(const Tensor<float, Image>& a, std::size_t i, const Tensor<float, Image>& b, std::size_t j) {
  const float* p = a.data() + i * Image::item_size;
  const float* q = b.data() + j * Image::item_size;
  double s = 0;
  for (std::size_t k = 0; k < Image::item_size; ++k) s += (double{p[k]} - q[k]) * (double{p[k]} - q[k]);
  return std::sqrt(s);
}

TEST(EndToEnd, EdmTinyMemorisesThreeImages) {
  // Every batch holds each image four times, so that every step sees all three at
  // several noise levels.
  const Images data = training_images(4), images = training_images(1);
  // ln sigma ~ N(0.8, 1.5^2) instead of EDM's N(-1.2, 1.2^2): which image a sample becomes
  // is decided at sigma ~ 1..20, where EDM's default puts fewer than one draw in six.
  diffusion::Edm policy;
  policy.p_mean = 0.8;
  policy.p_std = 1.5;
  auto model = std::make_unique<Model>(policy, /*init seed=*/1);
  train::TrainerConfig cfg{.batch = 12, .seed = 1};
  cfg.optimizer.lr = 1e-2;         // high for AdamW, fine for 48k parameters and 3 images
  cfg.ema.half_life_images = 500;  // ~40 steps: smooths the noisy steps, forgets the start
  train::Trainer trainer(*model, data, cfg);

  const double initial = train::evaluate_loss(*model, images);
  const auto t0 = std::chrono::steady_clock::now();
  int skipped = 0;
  trainer.run(kSteps, [&](const train::StepReport& r) { skipped += r.skipped; });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // Evaluate and sample with the averaged weights.
  trainer.ema().swap_with(*model);
  const double final_loss = train::evaluate_loss(*model, images);
  Tensor<float, Image> samples(16);
  diffusion::Heun<diffusion::KarrasSigmas>{.steps = 18}.sample(*model, samples.view(), /*seed=*/7);

  const Tensor<float, Image>& train_set = images.images();
  double closest_pair = INFINITY;
  for (std::size_t i = 0; i < kImages; ++i)
    for (std::size_t j = i + 1; j < kImages; ++j)
      closest_pair = std::min(closest_pair, distance(train_set, i, train_set, j));
  std::vector<int> hits(kImages, 0);
  double worst = 0;
  std::cout << std::fixed << std::setprecision(3) << "training: " << kSteps << " steps in " << seconds
            << " s; eval loss " << initial << " -> " << final_loss << " (ratio " << final_loss / initial
            << ")\nsample distance to the nearest training image / closest training pair (" << closest_pair << "):";
  for (std::size_t s = 0; s < samples.batch(); ++s) {
    std::size_t nearest = 0;
    for (std::size_t j = 1; j < kImages; ++j)
      if (distance(samples, s, train_set, j) < distance(samples, s, train_set, nearest)) nearest = j;
    const double ratio = distance(samples, s, train_set, nearest) / closest_pair;
    worst = std::max(worst, ratio);
    ++hits[nearest];
    std::cout << ' ' << ratio;
  }
  std::cout << "\nsamples per training image:";
  for (int h : hits) std::cout << ' ' << h;
  std::cout << '\n';
  RecordProperty("initial_loss", std::to_string(initial));
  RecordProperty("final_loss", std::to_string(final_loss));
  RecordProperty("worst_sample_ratio", std::to_string(worst));

  EXPECT_EQ(skipped, 0);
  EXPECT_LT(final_loss, initial / 3);
  // A blend of two training images lies at 0.5 of their distance from each; a memorised
  // sample only as far as its leftover noise takes it (0.06 to 0.09 here).
  EXPECT_LT(worst, 0.25);
  for (std::size_t k = 0; k < kImages; ++k) EXPECT_GT(hits[k], 0) << "training image " << k << " is never drawn";
}

}  // namespace
