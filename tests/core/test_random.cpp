// The counter-based generator: known-answer vectors, statistics, reproducibility.
#include <cmath>
#include <cstring>

#include "test_support.hpp"

namespace {

using namespace diffuse;
using diffuse::testing::with_threads;

TEST(Philox, KnownAnswerVectors) {
  // The Philox4x32-10 test vectors published with the algorithm (Random123).
  using C = Philox4x32::Counter;
  EXPECT_EQ(Philox4x32::apply({0, 0, 0, 0}, {0, 0}), (C{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(Philox4x32::apply({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}),
            (C{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(Philox4x32::apply({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}),
            (C{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

TEST(Random, NormalHasUnitMoments) {
  Tensor<double, Shape<dyn>> x(1000003);
  Generator g(1);
  fill_normal(x, g);
  const double n = static_cast<double>(x.size());
  const double m = sum(x) / n;
  const double var = sum_squares(x) / n - m * m;
  const double skew = sum((x - m) * (x - m) * (x - m)) / n;
  const double kurt = sum(square(square(x - m))) / n;
  // Standard errors for 1e6 samples: mean 0.001, variance 0.0014, kurtosis ~0.005.
  EXPECT_NEAR(m, 0.0, 0.005);
  EXPECT_NEAR(var, 1.0, 0.007);
  EXPECT_NEAR(skew, 0.0, 0.02);
  EXPECT_NEAR(kurt, 3.0, 0.05);
  Tensor<float, Shape<dyn>> y(200001);
  fill_normal(y, g, 2.0, 0.5);
  EXPECT_NEAR(mean(y), 2.0f, 0.01f);
  EXPECT_NEAR(std::sqrt(sum_squares(y - 2.f) / 200001.f), 0.5f, 0.01f);
}

TEST(Random, UniformStaysInItsOpenInterval) {
  Tensor<float, Shape<dyn>> x(100003);
  Generator g(2);
  fill_uniform(x, g, -3.0, 5.0);
  float lo = x(0), hi = x(0);
  for (float v : x) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  EXPECT_GT(lo, -3.f);
  EXPECT_LT(lo, -2.99f);
  EXPECT_LT(hi, 5.f);
  EXPECT_GT(hi, 4.99f);
  // Where rounding to float would reach an end, the values stay strictly inside.
  Tensor<float, Shape<dyn>> u(1 << 22);
  fill_uniform(u, g, 0.0, 1.0);
  EXPECT_GT(-max(-u), 0.f);
  EXPECT_LT(max(u), 1.f);
  EXPECT_NEAR(mean(x), 1.f, 0.05f);
}

TEST(Random, SameSeedSameNumbersAnyThreadCount) {
  Tensor<float, Shape<dyn, 28, 28, 1>> a(128), b(128);
  with_threads(1, [&] { Generator g(77, 3); fill_normal(a, g); });
  with_threads(2, [&] { Generator g(77, 3); fill_normal(b, g); });
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

TEST(Random, SeedsAndStreamsDiffer) {
  Tensor<float, Shape<dyn>> a(64), b(64), c(64);
  Generator ga(1, 0), gb(2, 0), gc(1, 1);
  fill_normal(a, ga);
  fill_normal(b, gb);
  fill_normal(c, gc);
  EXPECT_NE(std::memcmp(a.data(), b.data(), 64 * sizeof(float)), 0);
  EXPECT_NE(std::memcmp(a.data(), c.data(), 64 * sizeof(float)), 0);
}

TEST(Random, PositionAdvancesAndRestores) {
  Generator g(5);
  Tensor<float, Shape<dyn>> first(10), second(10), again(10);
  fill_normal(first, g);
  EXPECT_EQ(g.position(), 3u);  // 10 numbers use 3 blocks of 4
  const auto saved = g.position();
  fill_normal(second, g);
  EXPECT_NE(std::memcmp(first.data(), second.data(), 10 * sizeof(float)), 0);
  Generator restored(g.seed(), g.stream(), saved);
  fill_normal(again, restored);
  EXPECT_EQ(std::memcmp(second.data(), again.data(), 10 * sizeof(float)), 0);
}

TEST(Random, SplittingAFillAtBlockBoundariesGivesTheSameNumbers) {
  // A batch filled at once equals its halves filled one after the other, when the
  // halves hold whole blocks: per-image noise does not depend on how a batch is split.
  Tensor<float, Shape<dyn, 2, 2, 1>> whole(6), parts(6);
  Generator g1(9), g2(9);
  fill_normal(whole, g1);
  fill_normal(parts.items(0, 2), g2);
  fill_normal(parts.items(2, 4), g2);
  EXPECT_EQ(std::memcmp(whole.data(), parts.data(), whole.size() * sizeof(float)), 0);
}

}  // namespace
