// SSIM: known cases and a direct evaluation of the definition.
#include <cmath>
#include <type_traits>

#include <diffuse/tensor.hpp>
#include <diffuse/metrics/ssim.hpp>

#include <gtest/gtest.h>

namespace {

using diffuse::metrics::ssim;

template <std::size_t H, std::size_t W, std::size_t C>
using Image = diffuse::Tensor<float, diffuse::Shape<H, W, C>>;

template <std::size_t H, std::size_t W, std::size_t C>
Image<H, W, C> random_image(std::uint64_t seed) {
  Image<H, W, C> x;
  diffuse::Generator g(seed);
  fill_uniform(x, g, -1.0, 1.0);
  return x;
}

// The definition evaluated directly: for every valid window position, Gaussian-weighted
// statistics over the 11x11 window.
template <std::size_t H, std::size_t W, std::size_t C>
double ssim_direct(const Image<H, W, C>& a, const Image<H, W, C>& b) {
  const double c1 = std::pow(0.01 * 2, 2), c2 = std::pow(0.03 * 2, 2);
  double wsum = 0, g[11][11];
  for (int i = 0; i < 11; ++i)
    for (int j = 0; j < 11; ++j) wsum += g[i][j] = std::exp(-((i - 5) * (i - 5) + (j - 5) * (j - 5)) / (2 * 1.5 * 1.5));
  double total = 0;
  for (std::size_t ch = 0; ch < C; ++ch)
    for (std::size_t y = 0; y + 11 <= H; ++y)
      for (std::size_t x = 0; x + 11 <= W; ++x) {
        double ma = 0, mb = 0;
        for (std::size_t i = 0; i < 11; ++i)
          for (std::size_t j = 0; j < 11; ++j) {
            ma += g[i][j] / wsum * a(y + i, x + j, ch);
            mb += g[i][j] / wsum * b(y + i, x + j, ch);
          }
        double va = 0, vb = 0, cov = 0;
        for (std::size_t i = 0; i < 11; ++i)
          for (std::size_t j = 0; j < 11; ++j) {
            const double da = a(y + i, x + j, ch) - ma, db = b(y + i, x + j, ch) - mb;
            va += g[i][j] / wsum * da * da;
            vb += g[i][j] / wsum * db * db;
            cov += g[i][j] / wsum * da * db;
          }
        total += (2 * ma * mb + c1) * (2 * cov + c2) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
      }
  return total / double((H - 10) * (W - 10) * C);
}

TEST(Ssim, IdenticalImagesScoreOne) {
  const auto a = random_image<28, 28, 1>(1);
  EXPECT_NEAR(ssim(a.view(), a.view()), 1.0, 1e-12);
}

TEST(Ssim, ConstantImagesFollowTheLuminanceTerm) {
  // With no variance the structure term is c2 / c2 = 1 and SSIM is the luminance term.
  Image<16, 16, 1> a, b;
  a = 0.2f;
  b = -0.4f;
  const double c1 = std::pow(0.01 * 2, 2);
  EXPECT_NEAR(ssim(a.view(), b.view()), (2 * 0.2 * -0.4 + c1) / (0.04 + 0.16 + c1), 1e-6);
}

TEST(Ssim, MatchesTheDirectDefinition) {
  const auto a = random_image<20, 23, 3>(2);
  Image<20, 23, 3> b(0.6f * a + 0.4f * random_image<20, 23, 3>(3));  // correlated
  const double got = ssim(a.view(), b.view());
  EXPECT_NEAR(got, ssim_direct(a, b), 1e-9);
  EXPECT_NEAR(got, ssim(b.view(), a.view()), 1e-12);  // symmetric
  EXPECT_GT(got, 0.2);
  EXPECT_LT(got, 0.99);
}

TEST(Ssim, TakesImagesOfABatchAndConstOrMutableViews) {
  diffuse::Tensor<float, diffuse::Shape<diffuse::dyn, 12, 12, 1>> batch(2);
  diffuse::Generator g(6);
  fill_uniform(batch, g, -1.0, 1.0);
  const auto& const_batch = batch;
  static_assert(std::is_const_v<std::remove_pointer_t<decltype(const_batch.item(0).data())>>);
  const double mixed = ssim(batch.item(0), const_batch.item(1));
  EXPECT_EQ(mixed, ssim(const_batch.item(0), batch.item(1)));
  EXPECT_LT(mixed, 0.5);  // independent noise
}

// The form for images whose size is known only at run time gives the same number and
// checks the sizes it is given.
TEST(Ssim, RunTimeSizedImages) {
  const auto a = random_image<12, 13, 3>(7), b = random_image<12, 13, 3>(8);
  const std::span<const float> sa(a.data(), a.size()), sb(b.data(), b.size());
  EXPECT_EQ(ssim(sa, sb, 12, 13, 3), ssim(a.view(), b.view()));
  EXPECT_THROW(ssim(sa, sb.first(10), 12, 13, 3), std::invalid_argument);
  EXPECT_THROW(ssim(sa, sb, 13, 12, 2), std::invalid_argument);
}

TEST(Ssim, FallsAsNoiseGrows) {
  const auto a = random_image<32, 32, 1>(4);
  const auto noise = random_image<32, 32, 1>(5);
  double previous = 1.0;
  for (float level : {0.05f, 0.2f, 0.5f, 1.0f}) {
    const Image<32, 32, 1> b(a + level * noise);
    const double s = ssim(a.view(), b.view());
    EXPECT_LT(s, previous) << level;
    previous = s;
  }
}

TEST(Ssim, TooSmallImagesAreRejected) {
  const Image<10, 10, 1> a;
  EXPECT_THROW(ssim(a.view(), a.view()), std::invalid_argument);
}

}  // namespace
