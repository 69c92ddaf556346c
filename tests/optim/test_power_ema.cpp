// EDM2's power-function EMA and its post-hoc reconstruction: sigma_rel <-> gamma, the
// profiles' inner products against numerical integration, and a reconstruction from
// snapshots against the average of the same width kept during the run and against
// brute-force averaging of the parameter trajectory.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <vector>

#include <diffuse/optim/posthoc_ema.hpp>
#include <diffuse/optim/power_ema.hpp>

#include "toy_model.hpp"

namespace opt = diffuse::optim;
using diffuse::testing::ToyModel;

TEST(PowerEma, WidthAndExponent) {
  EXPECT_NEAR(opt::power_ema_sigma_rel(0.0), std::sqrt(1.0 / 12.0), 1e-15);  // the uniform average
  for (double s : {0.01, 0.05, 0.10, 0.2, 0.28}) {
    const double g = opt::power_ema_gamma(s);
    EXPECT_NEAR(opt::power_ema_sigma_rel(g), s, 1e-12) << s;
    // EDM2 eq. 126: gamma is a root of gamma^3 + 7 gamma^2 + (16 - s^-2) gamma + 12 - s^-2.
    const double t = 1.0 / (s * s);
    EXPECT_NEAR((g * g * g + 7 * g * g + (16 - t) * g + 12 - t) / (t * g + t), 0.0, 1e-12) << s;
  }
  EXPECT_THROW(opt::power_ema_gamma(0.0), std::invalid_argument);
  EXPECT_THROW(opt::power_ema_gamma(0.29), std::invalid_argument);
  EXPECT_THROW(opt::power_ema_gamma(std::nan("")), std::invalid_argument);
  EXPECT_EQ(opt::power_ema_prefix(0.05), "phema050.");
  EXPECT_EQ(opt::power_ema_prefix(0.1), "phema100.");
  EXPECT_EQ(opt::power_ema_beta(5.0, 128, 128), 0.0);  // the first step copies the weights
}

TEST(PowerEma, InnerProductsMatchNumericalIntegration) {
  auto profile = [](const opt::EmaProfile& p, double tau) {
    const double g = opt::power_ema_gamma(p.sigma_rel);
    return tau <= p.images ? (g + 1) * std::pow(tau / p.images, g) / p.images : 0.0;
  };
  for (auto [a, b] : {std::pair{opt::EmaProfile{1000, 0.05}, opt::EmaProfile{3000, 0.10}},
                      std::pair{opt::EmaProfile{3000, 0.05}, opt::EmaProfile{1000, 0.10}},
                      std::pair{opt::EmaProfile{2000, 0.2}, opt::EmaProfile{2000, 0.07}}}) {
    const int n = 40000;  // midpoint rule up to the earlier time
    const double m = std::min(a.images, b.images), h = m / n;
    double s = 0;
    for (int i = 0; i < n; ++i) s += profile(a, (i + 0.5) * h) * profile(b, (i + 0.5) * h) * h;
    EXPECT_NEAR(opt::ema_profile_inner_product(a, b), s, 1e-5 * s);
    EXPECT_NEAR(opt::ema_profile_inner_product(a, b), opt::ema_profile_inner_product(b, a), 1e-15 * s);
  }
}

TEST(PowerEma, ASnapshotReconstructsItself) {
  const std::vector<opt::EmaProfile> in = {{1000, 0.05}, {1000, 0.10}, {2000, 0.05}, {2000, 0.10}};
  const opt::PosthocEma r = opt::posthoc_ema_coefficients(in, {2000, 0.10});
  for (std::size_t i = 0; i < in.size(); ++i) EXPECT_NEAR(r.coefficients[i], i == 3 ? 1.0 : 0.0, 1e-9) << i;
  EXPECT_LT(r.relative_error, 1e-6);
  EXPECT_THROW(opt::posthoc_ema_coefficients({}, {1000, 0.1}), std::invalid_argument);
  EXPECT_THROW(opt::posthoc_ema_coefficients(in, {1000, 0.3}), std::invalid_argument);
}

TEST(PowerEma, PosthocReconstructionMatchesTheAverageKeptDuringTheRun) {
  // A toy run: batch 1, T steps, each parameter on its own trajectory. Two power EMAs
  // (0.05, 0.10) are saved every T/8 steps; the average of width 0.07 at T is
  // reconstructed from those 16 snapshots and compared with (a) a power EMA of width 0.07
  // kept during the run and (b) the weighted average of the trajectory, brute force.
  const int T = 16000, every = T / 8;
  ToyModel model;
  auto trajectory = [](std::size_t i, double t) {
    return std::sin(t / 900.0 + double(i)) + 1e-4 * t + 0.3 * std::cos(t / 97.0 * double(i + 1));
  };
  auto set = [&](double t) {
    std::size_t i = 0;
    for (float& w : model.w) w = static_cast<float>(trajectory(i++, t));
    for (float& b : model.b) b = static_cast<float>(trajectory(i++, t));
  };
  set(1);
  opt::PowerEma kept(model, {0.05, 0.10}), wanted(model, {0.07});
  std::vector<opt::EmaProfile> profiles;
  std::vector<std::vector<float>> snapshots;
  for (int t = 1; t <= T; ++t) {
    set(t);
    kept.update(model, t, 1);
    wanted.update(model, t, 1);
    if (t % every == 0)
      for (std::size_t k = 0; k < kept.size(); ++k) {
        profiles.push_back({double(t), kept.sigma_rels()[k]});
        snapshots.emplace_back();
        kept.average(k).for_each_param([&](std::string_view, std::span<float> v) {
          snapshots.back().insert(snapshots.back().end(), v.begin(), v.end());
        });
      }
  }
  const opt::PosthocEma r = opt::posthoc_ema_coefficients(profiles, {double(T), 0.07});
  EXPECT_LT(r.relative_error, 0.05);
  double sum = 0;
  for (double c : r.coefficients) sum += c;
  EXPECT_NEAR(sum, 1.0, 1e-12);
  std::vector<double> rec(snapshots[0].size(), 0.0);
  for (std::size_t s = 0; s < snapshots.size(); ++s)
    for (std::size_t i = 0; i < rec.size(); ++i) rec[i] += r.coefficients[s] * snapshots[s][i];
  std::vector<float> direct;
  wanted.average(0).for_each_param([&](std::string_view, std::span<float> v) { direct.insert(direct.end(), v.begin(), v.end()); });
  const double g = opt::power_ema_gamma(0.07);
  double max_kept = 0, max_rec = 0;
  for (std::size_t i = 0; i < rec.size(); ++i) {
    double num = 0, den = 0;  // sum_t t^g p_t / sum_t t^g: the profile's weights on the steps
    for (int t = 1; t <= T; ++t) {
      const double w = std::pow(double(t) / T, g);
      num += w * trajectory(i, t);
      den += w;
    }
    EXPECT_NEAR(direct[i], num / den, 1e-4) << "kept average, parameter " << i;
    EXPECT_NEAR(rec[i], direct[i], 1e-2) << "reconstruction, parameter " << i;
    max_kept = std::max(max_kept, std::abs(direct[i] - num / den));
    max_rec = std::max(max_rec, std::abs(rec[i] - direct[i]));
  }
  std::cout << "profile error " << r.relative_error << "; largest difference: kept vs brute force " << max_kept
            << ", reconstructed vs kept " << max_rec << "\n";
}
