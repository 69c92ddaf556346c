// SSIM: known cases and a direct evaluation of the definition.
#include <cmath>
#include <vector>

#include <diffuse/tensor.hpp>
#include <diffuse/metrics/ssim.hpp>

#include <gtest/gtest.h>

namespace {

using diffuse::metrics::ssim;

std::vector<float> random_image(std::size_t n, std::uint64_t seed, double lo = -1, double hi = 1) {
  diffuse::Tensor<float, diffuse::Shape<diffuse::dyn>> x(n);
  diffuse::Generator g(seed);
  fill_uniform(x, g, lo, hi);
  return {x.begin(), x.end()};
}

// The definition evaluated directly: for every valid window position, Gaussian-weighted
// statistics over the 11x11 window.
double ssim_direct(const std::vector<float>& a, const std::vector<float>& b, std::size_t h, std::size_t w,
                   std::size_t c) {
  const double c1 = std::pow(0.01 * 2, 2), c2 = std::pow(0.03 * 2, 2);
  double wsum = 0, g[11][11];
  for (int i = 0; i < 11; ++i)
    for (int j = 0; j < 11; ++j) wsum += g[i][j] = std::exp(-((i - 5) * (i - 5) + (j - 5) * (j - 5)) / (2 * 1.5 * 1.5));
  double total = 0;
  for (std::size_t ch = 0; ch < c; ++ch)
    for (std::size_t y = 0; y + 11 <= h; ++y)
      for (std::size_t x = 0; x + 11 <= w; ++x) {
        double ma = 0, mb = 0;
        for (int i = 0; i < 11; ++i)
          for (int j = 0; j < 11; ++j) {
            ma += g[i][j] / wsum * a[((y + i) * w + x + j) * c + ch];
            mb += g[i][j] / wsum * b[((y + i) * w + x + j) * c + ch];
          }
        double va = 0, vb = 0, cov = 0;
        for (int i = 0; i < 11; ++i)
          for (int j = 0; j < 11; ++j) {
            const double da = a[((y + i) * w + x + j) * c + ch] - ma, db = b[((y + i) * w + x + j) * c + ch] - mb;
            va += g[i][j] / wsum * da * da;
            vb += g[i][j] / wsum * db * db;
            cov += g[i][j] / wsum * da * db;
          }
        total += (2 * ma * mb + c1) * (2 * cov + c2) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
      }
  return total / double((h - 10) * (w - 10) * c);
}

TEST(Ssim, IdenticalImagesScoreOne) {
  auto a = random_image(28 * 28, 1);
  EXPECT_NEAR(ssim(a.data(), a.data(), 28, 28, 1), 1.0, 1e-12);
}

TEST(Ssim, ConstantImagesFollowTheLuminanceTerm) {
  // With no variance the structure term is c2 / c2 = 1 and SSIM is the luminance term.
  std::vector<float> a(16 * 16, 0.2f), b(16 * 16, -0.4f);
  const double c1 = std::pow(0.01 * 2, 2);
  EXPECT_NEAR(ssim(a.data(), b.data(), 16, 16, 1), (2 * 0.2 * -0.4 + c1) / (0.04 + 0.16 + c1), 1e-6);
}

TEST(Ssim, MatchesTheDirectDefinition) {
  auto a = random_image(20 * 23 * 3, 2);
  auto b = random_image(20 * 23 * 3, 3);
  for (std::size_t i = 0; i < a.size(); ++i) b[i] = 0.6f * a[i] + 0.4f * b[i];  // correlated
  const double got = ssim(a.data(), b.data(), 20, 23, 3);
  EXPECT_NEAR(got, ssim_direct(a, b, 20, 23, 3), 1e-9);
  EXPECT_NEAR(got, ssim(b.data(), a.data(), 20, 23, 3), 1e-12);  // symmetric
  EXPECT_GT(got, 0.2);
  EXPECT_LT(got, 0.99);
}

TEST(Ssim, FallsAsNoiseGrows) {
  auto a = random_image(32 * 32, 4);
  auto noise = random_image(32 * 32, 5);
  double previous = 1.0;
  for (float level : {0.05f, 0.2f, 0.5f, 1.0f}) {
    std::vector<float> b(a);
    for (std::size_t i = 0; i < b.size(); ++i) b[i] += level * noise[i];
    const double s = ssim(a.data(), b.data(), 32, 32, 1);
    EXPECT_LT(s, previous) << level;
    previous = s;
  }
}

TEST(Ssim, TooSmallImagesAreRejected) {
  std::vector<float> a(10 * 10);
  EXPECT_THROW(ssim(a.data(), a.data(), 10, 10, 1), std::invalid_argument);
}

}  // namespace
