// diffuse's samplers against k-diffusion's (sampling.py) on the same sigmas, the same start
// and the same noise: tests/fixtures/make_kdiffusion_fixture.py ran k-diffusion (float64) on
// the exact denoiser of mixture.hpp, with diffuse's noise computed in numpy. Every case must
// land on k-diffusion's points to float32 accuracy; a different update rule, step split or
// noise order lands elsewhere (the points move by O(1) in 12 steps).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <diffuse/diffusion/sampler.hpp>
#include <diffuse/io/safetensors.hpp>

#include "mixture.hpp"

namespace dd = diffuse::diffusion;
using diffuse::Tensor;
using diffuse::testing::Mixture;
using diffuse::testing::MixtureDenoiser;
using diffuse::testing::Point;

namespace {

constexpr std::size_t kImages = 16, kSteps = 12;
constexpr std::uint64_t kSeed = 7;

const diffuse::io::SafetensorsFile& fixture() {
  static const diffuse::io::SafetensorsFile f(std::string(DIFFUSE_FIXTURES_DIR) + "/kdiffusion_samplers.safetensors");
  return f;
}

const Mixture kMixture{};

// The largest |diffuse - k-diffusion| over the points, relative to max(1, |k-diffusion|).
double max_difference(const Tensor<float, Point>& x, const std::vector<float>& want) {
  double worst = 0.0;
  for (std::size_t k = 0; k < want.size(); ++k)
    worst = std::max(worst, std::abs(double(x.data()[k]) - want[k]) / std::max(1.0, std::abs(double(want[k]))));
  return worst;
}

// Runs `sampler` over k-diffusion's sigmas from the fixture's start with NoiseSource(kSeed)
// (its draw 0 was the start) and compares with the case `name`.
template <class S>
void expect_case(const S& sampler, const std::string& name, double tol = 2e-5,
                 const std::vector<double>& sigmas = dd::KarrasSchedule{}.sigmas(kSteps)) {
  SCOPED_TRACE(name);
  const auto x0 = fixture().read_vector("x0", {kImages, 2});
  Tensor<float, Point> x(kImages);
  std::copy(x0.begin(), x0.end(), x.data());
  dd::NoiseSource<Point> noise(kSeed, 0, kImages);
  noise.skip(1);
  MixtureDenoiser den{&kMixture};
  dd::NoCallback cb;
  sampler.run(den, x.view(), std::span<const double>(sigmas), noise, cb);
  const auto want = fixture().read_vector(name, {kImages, 2});
  const double diff = max_difference(x, want);
  std::printf("%-26s max difference from k-diffusion %.2e\n", name.c_str(), diff);
  EXPECT_LT(diff, tol);
}

}  // namespace

TEST(KDiffusion, SigmasAndStartAreDiffuses) {
  const std::vector<double> sigmas = dd::KarrasSchedule{}.sigmas(kSteps);
  const auto want = fixture().read_vector("sigmas", {kSteps + 1});
  for (std::size_t i = 0; i <= kSteps; ++i) EXPECT_NEAR(sigmas[i], want[i], 1e-6 * sigmas[i]) << i;
  // The fixture's start is diffuse's first draw: its numpy Philox is diffuse's.
  Tensor<float, Point> x(kImages);
  dd::NoiseSource<Point>(kSeed, 0, kImages).draw(x.view());
  const auto x0 = fixture().read_vector("x0", {kImages, 2});
  for (std::size_t k = 0; k < x0.size(); ++k) EXPECT_NEAR(x.data()[k] * sigmas[0], x0[k], 1e-5 * std::abs(x0[k]) + 1e-6);
}

TEST(KDiffusion, DeterministicSamplers) {
  expect_case(dd::Euler<>{}, "euler");
  expect_case(dd::Heun<>{}, "heun");
  expect_case(dd::Dpm2<>{}, "dpm_2");
  expect_case(dd::Lms<>{.order = 4}, "lms");
  expect_case(dd::Lms<>{.order = 2}, "lms.order2");
  expect_case(dd::DpmPp2M<>{}, "dpmpp_2m");
  expect_case(dd::DpmPp2SAncestral<>{.eta = 0.0}, "dpmpp_2s_ancestral.eta0");
  expect_case(dd::DpmPpSde<>{.eta = 0.0}, "dpmpp_sde.eta0");
  expect_case(dd::DpmPp3MSde<>{.eta = 0.0}, "dpmpp_3m_sde.eta0");
}

TEST(KDiffusion, ChurnAndAncestralNoise) {
  // k-diffusion's Euler, Heun and DPM-2 draw churn noise every step; with churn on every step
  // (S_tmin 0) diffuse draws the same sequence.
  const double s_churn = 2.0, s_noise = 1.003;
  expect_case(dd::Euler<>{.s_churn = s_churn, .s_noise = s_noise}, "euler.churn");
  expect_case(dd::Heun<>{.s_churn = s_churn, .s_noise = s_noise}, "heun.churn");
  expect_case(dd::Dpm2<>{.s_churn = s_churn, .s_noise = s_noise}, "dpm_2.churn");
  expect_case(dd::EulerAncestral<>{}, "euler_ancestral");
  expect_case(dd::EulerAncestral<>{.eta = 0.6, .s_noise = 0.98}, "euler_ancestral.eta");
  expect_case(dd::Dpm2Ancestral<>{}, "dpm_2_ancestral");
  expect_case(dd::DpmPp2SAncestral<>{}, "dpmpp_2s_ancestral");
}

TEST(KDiffusion, BrownianSdeSamplers) {
  expect_case(dd::DpmPpSde<>{}, "dpmpp_sde");
  expect_case(dd::DpmPp2MSde<>{}, "dpmpp_2m_sde");
  expect_case(dd::DpmPp2MSde<>{.heun = true}, "dpmpp_2m_sde.heun");
  expect_case(dd::DpmPp3MSde<>{}, "dpmpp_3m_sde");
}

// k-diffusion measures the error over the whole batch; the fixture ran each image alone, and
// diffuse's per-image control must take the same steps: the same points and evaluations.
// DPM-Solver-3 is sensitive to rounding on this mixture, so its yardstick is k-diffusion's own
// float32 run: diffuse, in float32, must be within twice its distance from the float64 result.
TEST(KDiffusion, DpmAdaptiveStepsAsKDiffusionDoesPerImage) {
  const auto kd64 = fixture().read_vector("dpm_adaptive", {kImages, 2});
  const auto kd32 = fixture().read_vector("dpm_adaptive.f32", {kImages, 2});
  double spread = 0.0;
  for (std::size_t k = 0; k < kd64.size(); ++k)
    spread = std::max(spread, std::abs(double(kd32[k]) - kd64[k]) / std::max(1.0, std::abs(double(kd64[k]))));
  std::printf("k-diffusion's dpm_adaptive, float32 against float64: %.2e\n", spread);
  struct Case {
    const char* name;
    int order;
    double sigma_min, tol;
  };
  for (const Case c : {Case{"dpm_adaptive", 3, 0.002, std::max(2e-5, 2.0 * spread)},
                       Case{"dpm_adaptive.order2", 2, 0.002, 2e-5}}) {
    const std::vector<double> sigmas = dd::KarrasSchedule{.sigma_min = c.sigma_min}.sigmas(kSteps);
    expect_case(dd::DpmAdaptive<>{.order = c.order}, c.name, c.tol, sigmas);
    const auto nfe = fixture().read_vector(std::string(c.name) + ".nfe", {kImages});
    const auto x0 = fixture().read_vector("x0", {kImages, 2});
    for (std::size_t i = 0; i < kImages; ++i) {  // one image at a time: its own evaluations
      Tensor<float, Point> x(1);
      std::copy_n(x0.begin() + 2 * i, 2, x.data());
      dd::NoiseSource<Point> noise(kSeed, i, 1);
      noise.skip(1);
      MixtureDenoiser den{&kMixture};
      dd::NoCallback cb;
      const dd::AdaptiveStats st =
          dd::DpmAdaptive<>{.order = c.order}.run(den, x.view(), std::span<const double>(sigmas), noise, cb);
      EXPECT_EQ(double(st.evaluations), nfe[i]) << c.name << " image " << i;
    }
  }
}
