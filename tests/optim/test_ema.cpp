// EMA of the weights: EDM's half-life form, ramp-up, fixed decay, copy and swap.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include <diffuse/optim/ema.hpp>

#include "toy_model.hpp"

namespace opt = diffuse::optim;
using diffuse::testing::ToyModel;

TEST(Ema, HalfLifeBeta) {
  const opt::EmaHalfLife no_ramp{.half_life_images = 1000, .rampup_ratio = 0};
  EXPECT_NEAR(no_ramp.beta(1e9, 1000), 0.5, 1e-15);    // one half-life per batch
  EXPECT_NEAR(no_ramp.beta(1e9, 250), std::pow(0.5, 0.25), 1e-15);
  // After half_life images in batches of 100, the old weights' share is 1/2.
  EXPECT_NEAR(std::pow(no_ramp.beta(0, 100), 10), 0.5, 1e-12);
  // EDM's defaults with ramp-up: at the start the half-life is images_seen * 0.05.
  const opt::EmaHalfLife edm{};
  EXPECT_EQ(edm.beta(0, 128), 0.0);  // the first update copies the weights
  EXPECT_NEAR(edm.beta(128 * 100, 128), std::pow(0.5, 128 / 640.0), 1e-15);
  EXPECT_NEAR(edm.beta(1e9, 128), std::pow(0.5, 128 / 500e3), 1e-15);
}

TEST(Ema, FixedDecayMatchesReference) {
  ToyModel model;
  opt::Ema ema(model);
  std::vector<double> ref(model.w.begin(), model.w.end());
  const double beta = 0.9;
  for (int t = 1; t <= 20; ++t) {
    for (std::size_t i = 0; i < model.w.size(); ++i) model.w[i] = static_cast<float>(std::cos(t + i));
    ema.update(model, beta);
    for (std::size_t i = 0; i < ref.size(); ++i) ref[i] = beta * ref[i] + (1 - beta) * model.w[i];
  }
  std::size_t k = 0;
  ema.for_each_param([&](std::string_view name, std::span<float> v) {
    if (name != "layer.weight") return;
    for (float x : v) {
      EXPECT_NEAR(x, ref[k], 1e-6);
      ++k;
    }
  });
  EXPECT_EQ(k, 5u);
}

TEST(Ema, HalfLifeUpdateAndRampUp) {
  ToyModel model;
  opt::Ema ema(model);
  model.w.assign(5, 1.f);
  model.b.assign(3, 1.f);
  // Ramp-up at images_seen = 0: beta = 0, the EMA becomes the weights.
  ema.update(model, opt::EmaHalfLife{}, 0, 64);
  ToyModel out;
  ema.copy_to(out);
  EXPECT_EQ(out.w, model.w);
  // A constant model stays constant under any beta.
  ema.update(model, opt::EmaHalfLife{.half_life_images = 100, .rampup_ratio = 0}, 1e6, 100);
  ema.copy_to(out);
  for (float x : out.w) EXPECT_FLOAT_EQ(x, 1.f);
}

TEST(Ema, SwapExchangesWeights) {
  ToyModel model;
  opt::Ema ema(model);
  const auto original = model.w;
  model.w.assign(5, 7.f);
  ema.swap_with(model);
  EXPECT_EQ(model.w, original);
  ema.swap_with(model);
  EXPECT_EQ(model.w, std::vector<float>(5, 7.f));
  ToyModel other;
  other.b.resize(4);
  other.db.resize(4);
  EXPECT_THROW(ema.update(other, 0.5), std::invalid_argument);
}
