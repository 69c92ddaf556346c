// Sigma schedules against their formulas (evaluated here in another form) and a few
// numbers computed by hand / an independent script.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include <diffuse/diffusion/schedule.hpp>

namespace dd = diffuse::diffusion;

namespace {

void expect_descending_then_zero(const std::vector<double>& s, std::size_t n) {
  ASSERT_EQ(s.size(), n + 1);
  for (std::size_t i = 0; i + 1 < n; ++i) EXPECT_GT(s[i], s[i + 1]) << "at " << i;
  EXPECT_GT(s[n - 1], 0.0);
  EXPECT_EQ(s[n], 0.0);
}

template <dd::Schedule S>
void expect_span_matches_vector(const S& sched, std::size_t n) {
  std::vector<double> out(n + 1, -1.0);
  sched.sigmas(std::span<double>(out));
  EXPECT_EQ(out, sched.sigmas(n));
}

}  // namespace

TEST(Schedule, KarrasMatchesEq5AndHandValues) {
  const dd::KarrasSchedule k{};  // 0.002, 80, rho 7
  const std::size_t n = 18;
  const auto s = k.sigmas(n);
  expect_descending_then_zero(s, n);
  // sigma_i = (smax^(1/rho) (1 - f) + smin^(1/rho) f)^rho, f = i / (n - 1).
  for (std::size_t i = 0; i < n; ++i) {
    const double f = static_cast<double>(i) / (n - 1);
    const double ref = std::pow(std::pow(80.0, 1 / 7.0) * (1 - f) + std::pow(0.002, 1 / 7.0) * f, 7.0);
    EXPECT_NEAR(s[i], ref, 1e-12 * ref) << i;
  }
  EXPECT_DOUBLE_EQ(s[0], 80.0);
  EXPECT_NEAR(s[1], 57.585984721, 1e-8);
  EXPECT_NEAR(s[2], 40.785573797, 1e-8);
  EXPECT_NEAR(s[16], 0.0075280199628, 1e-12);
  EXPECT_NEAR(s[17], 0.002, 1e-15);
  expect_span_matches_vector(k, 5);
  // One step: just sigma_max, then 0.
  EXPECT_EQ(k.sigmas(1), (std::vector<double>{80.0, 0.0}));
  EXPECT_THROW(k.sigmas(0), std::invalid_argument);
}

TEST(Schedule, ExponentialIsGeometric) {
  const dd::ExponentialSchedule e{.sigma_min = 0.01, .sigma_max = 10.0};
  const std::size_t n = 4;
  const auto s = e.sigmas(n);
  expect_descending_then_zero(s, n);
  // 10, 1, 0.1, 0.01: ratio 10 per step.
  EXPECT_NEAR(s[0], 10.0, 1e-12);
  EXPECT_NEAR(s[1], 1.0, 1e-12);
  EXPECT_NEAR(s[2], 0.1, 1e-13);
  EXPECT_NEAR(s[3], 0.01, 1e-14);
  expect_span_matches_vector(e, 7);
}

TEST(Schedule, VeIsSqrtOfGeometricT) {
  const dd::VeSchedule v{};  // 0.02, 100
  const std::size_t n = 10;
  const auto s = v.sigmas(n);
  expect_descending_then_zero(s, n);
  const auto g = dd::ExponentialSchedule{.sigma_min = 0.02, .sigma_max = 100.0}.sigmas(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double t = 100.0 * 100.0 * std::pow(0.02 * 0.02 / (100.0 * 100.0), static_cast<double>(i) / (n - 1));
    EXPECT_NEAR(s[i], std::sqrt(t), 1e-12 * s[i]);
    EXPECT_NEAR(s[i], g[i], 1e-12 * s[i]);  // same discretisation, other parameterisation
  }
}

TEST(Schedule, VpEndpointsAndInverse) {
  const dd::VpSchedule vp{};  // beta_d 19.9, beta_min 0.1, eps_s 1e-3
  const std::size_t n = 12;
  const auto s = vp.sigmas(n);
  expect_descending_then_zero(s, n);
  EXPECT_NEAR(s[0], 152.16697028, 1e-6);            // sqrt(e^10.05 - 1)
  EXPECT_NEAR(s[n - 1], 0.0104859927867, 1e-12);   // sqrt(e^(19.9e-6/2 + 1e-4) - 1)
  for (std::size_t i = 0; i < n; ++i) {
    const double t = 1.0 + static_cast<double>(i) / (n - 1) * (1e-3 - 1.0);
    EXPECT_NEAR(s[i], std::sqrt(std::exp(0.5 * 19.9 * t * t + 0.1 * t) - 1.0), 1e-10 * s[i]);
    EXPECT_NEAR(vp.t(s[i]), t, 1e-12);
  }
  // EDM generate.py's choice of beta_d, beta_min for a sigma range hits both ends.
  const auto r = dd::VpSchedule::from_range(0.002, 80.0);
  const auto sr = r.sigmas(n);
  EXPECT_NEAR(sr[0], 80.0, 1e-9);
  EXPECT_NEAR(sr[n - 1], 0.002, 1e-12);
}

TEST(Schedule, DdpmDiscreteLinearBetas) {
  const dd::DdpmSchedule d{};
  // Independent: sigma_t^2 = 1 / prod(1 - beta) - 1.
  double abar = 1.0;
  std::vector<double> table;
  for (int t = 0; t < 1000; ++t) {
    abar *= 1.0 - (1e-4 + (0.02 - 1e-4) * t / 999.0);
    table.push_back(std::sqrt(1.0 / abar - 1.0));
  }
  EXPECT_NEAR(table[0], 0.0100005000375, 1e-12);  // sqrt(1e-4 / 0.9999)
  EXPECT_NEAR(table[999], 157.40728081, 1e-6);
  const auto s = d.sigmas(10);
  expect_descending_then_zero(s, 10);
  const int steps[] = {999, 888, 777, 666, 555, 444, 333, 222, 111, 0};
  for (int i = 0; i < 10; ++i) EXPECT_NEAR(s[i], table[steps[i]], 1e-9 * table[steps[i]]) << i;
  EXPECT_NEAR(d.sigma_at(500), table[500], 1e-9 * table[500]);
  EXPECT_NEAR(s[1], 54.567513088, 1e-6);
}

TEST(Schedule, CosineIddpmLevels) {
  const dd::CosineSchedule c{};
  const auto u = c.levels();
  ASSERT_EQ(u.size(), 1001u);
  EXPECT_EQ(u[1000], 0.0);
  // u_999 = sqrt(1 / (abar(999) / abar(1000)) - 1), abar(j) = sin^2(pi/2 j / 1008).
  const double pi = 3.14159265358979323846;
  const double a999 = std::pow(std::sin(0.5 * pi * 999 / 1008.0), 2), a1000 = std::pow(std::sin(0.5 * pi * 1000 / 1008.0), 2);
  EXPECT_NEAR(u[999], std::sqrt(a1000 / a999 - 1.0), 1e-15);
  EXPECT_NEAR(u[999], 0.0064254127711, 1e-12);
  EXPECT_NEAR(u[500], 1.01238956395, 1e-9);
  EXPECT_NEAR(u[0], 20291.16961, 1e-4);  // clipped by C1 = 0.001 at the noisy end
  const auto s = c.sigmas(18);
  expect_descending_then_zero(s, 18);
  EXPECT_NEAR(s[0], 80.203701845, 1e-7);          // the largest level <= sigma_max = 81
  EXPECT_NEAR(s[17], 0.0064254127711, 1e-12);     // the smallest level >= 0.002
  // Evenly spaced by index over the 992 kept levels: entry i is u_{8 + round(i 991 / 17)}.
  for (std::size_t i = 0; i < 18; ++i)
    EXPECT_EQ(s[i], u[8 + static_cast<std::size_t>(std::nearbyint(991.0 * i / 17.0))]) << i;
}
