// Reductions against double-precision loops; bit-identity across thread counts.
#include <cmath>
#include <cstring>
#include <limits>

#include "test_support.hpp"

namespace {

using namespace diffuse;
using diffuse::testing::close;
using diffuse::testing::tail_sizes;
using diffuse::testing::with_threads;

template <class T>
class Reduce : public ::testing::Test {};
using ElementTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Reduce, ElementTypes);

template <class T>
constexpr double sum_tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;

TYPED_TEST(Reduce, FullReductionsMatchDoubleLoops) {
  using T = TypeParam;
  for (std::size_t n : tail_sizes) {
    SCOPED_TRACE(n);
    Tensor<T, Shape<dyn>> x(n);
    Generator g(11);
    fill_uniform(x, g, -1.0, 2.0);
    double s = 0, ss = 0, m = -1e300;
    for (T v : x) {
      s += v;
      ss += double(v) * v;
      m = std::max(m, double(v));
    }
    EXPECT_TRUE(close<double>(sum(x), s, sum_tol<T>));
    EXPECT_TRUE(close<double>(mean(x), s / n, sum_tol<T>));
    EXPECT_TRUE(close<double>(sum_squares(x), ss, sum_tol<T>));
    EXPECT_EQ(max(x), static_cast<T>(m));
    // A fused expression reduces without a temporary.
    EXPECT_TRUE(close<double>(sum(x * T(2) + T(1)), 2 * s + n, sum_tol<T>));
  }
}

TYPED_TEST(Reduce, FullReductionsAreThreadCountIndependent) {
  using T = TypeParam;
  const std::size_t n = 1000003;
  Tensor<T, Shape<dyn>> x(n);
  Generator g(12);
  fill_normal(x, g);
  T s1{}, s2{}, q1{}, q2{};
  with_threads(1, [&] { s1 = sum(x); q1 = sum_squares(x); });
  with_threads(2, [&] { s2 = sum(x); q2 = sum_squares(x); });
  EXPECT_EQ(std::memcmp(&s1, &s2, sizeof(T)), 0);
  EXPECT_EQ(std::memcmp(&q1, &q2, sizeof(T)), 0);
}

TEST(Reduce, MaxPropagatesNaN) {
  Tensor<float, Shape<dyn>> x(100);
  x = 1.f;
  x(57) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(max(x)));
  EXPECT_TRUE(std::isnan(sum(x)));
}

// Naive reduction of an (N, H, W, C) tensor along the axes flagged in `red`.
template <class T, std::size_t H, std::size_t W, std::size_t C>
std::vector<double> naive(const Tensor<T, Shape<dyn, H, W, C>>& x, std::array<bool, 4> red, bool take_max) {
  const std::size_t ext[4] = {x.batch(), H, W, C};
  std::size_t out_ext[4];
  std::size_t out_n = 1;
  for (int a = 0; a < 4; ++a) {
    out_ext[a] = red[a] ? 1 : ext[a];
    out_n *= out_ext[a];
  }
  std::vector<double> out(out_n, take_max ? -1e300 : 0.0);
  for (std::size_t n = 0; n < ext[0]; ++n)
    for (std::size_t h = 0; h < H; ++h)
      for (std::size_t w = 0; w < W; ++w)
        for (std::size_t c = 0; c < C; ++c) {
          const std::size_t idx[4] = {n, h, w, c};
          std::size_t o = 0;
          for (int a = 0; a < 4; ++a) o = o * out_ext[a] + (red[a] ? 0 : idx[a]);
          const double v = x(n, h, w, c);
          out[o] = take_max ? std::max(out[o], v) : out[o] + v;
        }
  return out;
}

template <class T, class O>
void expect_matches(const O& got, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i)
    ASSERT_TRUE(close<double>(got.data()[i], want[i], tol)) << "output " << i;
}

TYPED_TEST(Reduce, AlongAxesMatchesNaive) {
  using T = TypeParam;
  for (std::size_t batch : {1, 3, 64}) {
    SCOPED_TRACE(batch);
    Tensor<T, Shape<dyn, 5, 7, 6>> x(batch);
    Generator g(13);
    fill_uniform(x, g, -1.0, 1.0);
    expect_matches<T>(sum<0, 1, 2>(x), naive(x, {true, true, true, false}, false), sum_tol<T>);
    expect_matches<T>(sum<1, 2, 3>(x), naive(x, {false, true, true, true}, false), sum_tol<T>);
    expect_matches<T>(sum<1, 2>(x), naive(x, {false, true, true, false}, false), sum_tol<T>);
    expect_matches<T>(sum<0, 2>(x), naive(x, {true, false, true, false}, false), sum_tol<T>);
    expect_matches<T>(sum<3>(x), naive(x, {false, false, false, true}, false), sum_tol<T>);
    expect_matches<T>(max<1, 2>(x), naive(x, {false, true, true, false}, true), 0);
    expect_matches<T>(max<0, 3>(x), naive(x, {true, false, false, true}, true), 0);
    auto m = mean<0, 1, 2>(x);
    auto s = naive(x, {true, true, true, false}, false);
    for (auto& v : s) v /= double(batch * 5 * 7);
    expect_matches<T>(m, s, sum_tol<T>);
    Tensor<T, Shape<dyn, 5, 7, 6>> sq(x * x);
    expect_matches<T>(sum_squares<1, 2>(x), naive(sq, {false, true, true, false}, false), sum_tol<T>);
  }
}

TYPED_TEST(Reduce, PerGroupStatisticsThroughAReshape) {
  using T = TypeParam;
  constexpr std::size_t H = 7, W = 7, C = 64, G = 16;
  Tensor<T, Shape<dyn, H, W, C>> x(3);
  Generator g(14);
  fill_normal(x, g);
  // (N, H, W, C) viewed as (N, H*W, G, C/G): reducing axes 1 and 3 gives (N, G).
  Tensor<T, Shape<dyn, G>> stats(3);
  sum<1, 3>(x.template reshape<Shape<dyn, H * W, G, C / G>>(), stats);
  for (std::size_t n = 0; n < 3; ++n)
    for (std::size_t gi = 0; gi < G; ++gi) {
      double s = 0;
      for (std::size_t h = 0; h < H; ++h)
        for (std::size_t w = 0; w < W; ++w)
          for (std::size_t c = gi * (C / G); c < (gi + 1) * (C / G); ++c) s += x(n, h, w, c);
      ASSERT_TRUE(close<double>(stats(n, gi), s, sum_tol<T>)) << n << "," << gi;
    }
  Tensor<T, Shape<dyn, G>> wrong(2);
  EXPECT_THROW((sum<1, 3>(x.template reshape<Shape<dyn, H * W, G, C / G>>(), wrong)), ShapeError);
}

TEST(Reduce, AlongAxesIsThreadCountIndependent) {
  Tensor<float, Shape<dyn, 28, 28, 32>> x(64);
  Generator g(15);
  fill_normal(x, g);
  Tensor<float, Shape<dyn, 32>> a, b;
  with_threads(1, [&] { a = sum<1, 2>(x); });
  with_threads(2, [&] { b = sum<1, 2>(x); });
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

}  // namespace
