// Sigma schedules against their formulas (evaluated here in another form) and a few
// numbers computed by hand / an independent script.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include <diffuse/diffusion/schedule.hpp>
#include <diffuse/diffusion/schedule_registry.hpp>

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

// The registry gives each schedule's own sigmas, applies a range the way its type does,
// and refuses what a schedule cannot do, naming it.
TEST(ScheduleRegistry, ByNameIsTheScheduleItself) {
  using namespace diffuse::diffusion;
  const std::size_t n = 12;
  EXPECT_EQ(sigmas_by_name("karras", n), KarrasSchedule{}.sigmas(n));
  EXPECT_EQ(sigmas_by_name("exponential", n), ExponentialSchedule{}.sigmas(n));
  EXPECT_EQ(sigmas_by_name("ve", n), VeSchedule{}.sigmas(n));
  EXPECT_EQ(sigmas_by_name("vp", n), VpSchedule{}.sigmas(n));
  EXPECT_EQ(sigmas_by_name("ddpm", n), DdpmSchedule{}.sigmas(n));
  EXPECT_EQ(sigmas_by_name("cosine", n), CosineSchedule{}.sigmas(n));
  for (const auto& e : schedule_table) {  // every entry runs: n descending sigmas, then 0
    const auto s = sigmas_by_name(e.name, n);
    ASSERT_EQ(s.size(), n + 1) << e.name;
    EXPECT_EQ(s.back(), 0.0) << e.name;
    for (std::size_t i = 0; i + 1 < n; ++i) EXPECT_GT(s[i], s[i + 1]) << e.name << " at " << i;
  }
}

TEST(ScheduleRegistry, RangeSetsTheEndPoints) {
  using namespace diffuse::diffusion;
  for (const char* name : {"karras", "exponential", "ve", "vp"}) {
    const auto s = sigmas_by_name(name, 10, {.sigma_min = 0.05, .sigma_max = 20});
    EXPECT_NEAR(s.front(), 20.0, 1e-9 * 20) << name;
    EXPECT_NEAR(s[9], 0.05, 1e-9) << name;
  }
  const auto low = sigmas_by_name("karras", 10, {.sigma_max = 5});  // one bound: the other is the schedule's own
  EXPECT_NEAR(low.front(), 5.0, 1e-12);
  EXPECT_NEAR(low[9], KarrasSchedule{}.sigma_min, 1e-15);
  const auto c = sigmas_by_name("cosine", 8, {.sigma_min = 0.1, .sigma_max = 10});
  for (std::size_t i = 0; i < 8; ++i) EXPECT_TRUE(c[i] >= 0.1 && c[i] <= 10) << c[i];
}

TEST(ScheduleRegistry, RefusesWhatAScheduleCannotDo) {
  using namespace diffuse::diffusion;
  auto message = [](auto f) {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([] { sigmas_by_name("linear", 10); }).find("unknown schedule 'linear' (known: karras, exponential"),
            std::string::npos);
  EXPECT_NE(message([] { sigmas_by_name("ddpm", 10, {.sigma_max = 5}); }).find("ddpm schedule takes no sigma range"),
            std::string::npos);
  EXPECT_NE(message([] { sigmas_by_name("ddpm", 1001); }).find("1001 steps"), std::string::npos);
  EXPECT_NE(message([] { sigmas_by_name("cosine", 18, {.sigma_min = 50, .sigma_max = 60}); }).find("18 steps"),
            std::string::npos);
  EXPECT_NE(message([] { sigmas_by_name("karras", 10, {.sigma_min = -1}); }).find("finite and >= 0"), std::string::npos);
  EXPECT_NE(message([] { sigmas_by_name("karras", 10, {.sigma_max = std::nan("")}); }).find("finite and >= 0"),
            std::string::npos);
  EXPECT_NE(message([] { sigmas_by_name("karras", 0); }).find("at least one step"), std::string::npos);
}
