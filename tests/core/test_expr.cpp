// Element-wise expressions against plain scalar loops, on sizes that exercise the
// simd tail, and bit-identity across thread counts.
#include <cmath>
#include <cstring>
#include <functional>

#include "test_support.hpp"

namespace {

using namespace diffuse;
using diffuse::testing::close;
using diffuse::testing::tail_sizes;
using diffuse::testing::tolerance;
using diffuse::testing::with_threads;

template <class T>
using Vec = Tensor<T, Shape<dyn>>;

template <class T>
Vec<T> random_vec(std::size_t n, double lo, double hi, std::uint64_t seed) {
  Vec<T> v(n);
  Generator g(seed);
  fill_uniform(v, g, lo, hi);
  return v;
}

template <class T>
class Expr : public ::testing::Test {};
using ElementTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Expr, ElementTypes);

// Checks every element of `got` against ref(i).
template <class T, class R>
void expect_elements(const Vec<T>& got, R ref, double tol) {
  std::size_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    auto ok = close<T>(got.data()[i], static_cast<T>(ref(i)), tol);
    if (!ok && bad++ < 5) ADD_FAILURE() << "element " << i << " of " << got.size() << ": " << ok.message();
  }
  EXPECT_EQ(bad, 0u);
}

TYPED_TEST(Expr, UnaryFunctionsMatchScalarMath) {
  using T = TypeParam;
  for (std::size_t n : tail_sizes) {
    SCOPED_TRACE(n);
    const auto x = random_vec<T>(n, -4.0, 4.0, 1);
    const auto pos = random_vec<T>(n, 0.01, 9.0, 2);
    Vec<T> y(n);
    const T* a = x.data();
    const T* p = pos.data();
    auto ref_exp = [&](std::size_t i) { return std::exp(a[i]); };
    y = exp(x);
    expect_elements(y, ref_exp, 4 * tolerance<T>);
    y = log(pos);
    expect_elements(y, [&](std::size_t i) { return std::log(p[i]); }, 4 * tolerance<T>);
    y = sqrt(pos);
    expect_elements(y, [&](std::size_t i) { return std::sqrt(p[i]); }, tolerance<T>);
    y = rsqrt(pos);
    expect_elements(y, [&](std::size_t i) { return T(1) / std::sqrt(p[i]); }, tolerance<T>);
    y = tanh(x);
    expect_elements(y, [&](std::size_t i) { return std::tanh(a[i]); }, 4 * tolerance<T>);
    y = sigmoid(x);
    expect_elements(y, [&](std::size_t i) { return T(1) / (T(1) + std::exp(-a[i])); }, 4 * tolerance<T>);
    y = silu(x);
    expect_elements(y, [&](std::size_t i) { return a[i] / (T(1) + std::exp(-a[i])); }, 4 * tolerance<T>);
    y = relu(x);
    expect_elements(y, [&](std::size_t i) { return a[i] > 0 ? a[i] : T(0); }, 0);
    y = square(x);
    expect_elements(y, [&](std::size_t i) { return a[i] * a[i]; }, 0);
    y = abs(x);
    expect_elements(y, [&](std::size_t i) { return std::abs(a[i]); }, 0);
    y = -x;
    expect_elements(y, [&](std::size_t i) { return -a[i]; }, 0);
  }
}

TYPED_TEST(Expr, BinaryOperatorsAreExact) {
  using T = TypeParam;
  for (std::size_t n : tail_sizes) {
    SCOPED_TRACE(n);
    const auto x = random_vec<T>(n, -3.0, 3.0, 3);
    const auto z = random_vec<T>(n, 0.5, 2.0, 4);
    const T* a = x.data();
    const T* b = z.data();
    Vec<T> y(n);
    y = x + z;
    expect_elements(y, [&](std::size_t i) { return a[i] + b[i]; }, 0);
    y = x - z;
    expect_elements(y, [&](std::size_t i) { return a[i] - b[i]; }, 0);
    y = x * z;
    expect_elements(y, [&](std::size_t i) { return a[i] * b[i]; }, 0);
    y = x / z;
    expect_elements(y, [&](std::size_t i) { return a[i] / b[i]; }, 0);
    y = T(2) - x;
    expect_elements(y, [&](std::size_t i) { return T(2) - a[i]; }, 0);
    y = 3 / z;  // an int converts to the element type
    expect_elements(y, [&](std::size_t i) { return T(3) / b[i]; }, 0);
    y = minimum(x, z);
    expect_elements(y, [&](std::size_t i) { return std::min(a[i], b[i]); }, 0);
    y = maximum(x, T(0.5));
    expect_elements(y, [&](std::size_t i) { return std::max(a[i], T(0.5)); }, 0);
    y = x > z;
    expect_elements(y, [&](std::size_t i) { return a[i] > b[i] ? 1 : 0; }, 0);
    y = x <= T(0);
    expect_elements(y, [&](std::size_t i) { return a[i] <= 0 ? 1 : 0; }, 0);
    y = where(x > T(0), x, z);
    expect_elements(y, [&](std::size_t i) { return a[i] > 0 ? a[i] : b[i]; }, 0);
    y = clamp(x, T(-1), T(1));
    expect_elements(y, [&](std::size_t i) { return std::clamp(a[i], T(-1), T(1)); }, 0);
  }
}

TYPED_TEST(Expr, FusedExpressionMatchesLoop) {
  using T = TypeParam;
  for (std::size_t n : tail_sizes) {
    SCOPED_TRACE(n);
    const auto x = random_vec<T>(n, -3.0, 3.0, 5);
    const T* a = x.data();
    Vec<T> y(n);
    y = silu(T(1.5) * x + T(0.25)) * x - exp(-square(x)) / T(3);
    expect_elements(y, [&](std::size_t i) {
      T u = T(1.5) * a[i] + T(0.25);
      return u / (T(1) + std::exp(-u)) * a[i] - std::exp(-(a[i] * a[i])) / T(3);
    }, 8 * tolerance<T>);
  }
}

TYPED_TEST(Expr, CompoundAssignment) {
  using T = TypeParam;
  auto x = random_vec<T>(17, -1.0, 1.0, 6);
  const Vec<T> x0 = x;
  x += T(1);
  x *= x0;
  x -= x0;
  x /= T(2);
  expect_elements(x, [&](std::size_t i) {
    T a = x0.data()[i];
    return ((a + 1) * a - a) / 2;
  }, tolerance<T>);
}

TYPED_TEST(Expr, ElementForElementAliasingIsCorrect) {
  using T = TypeParam;
  for (std::size_t n : tail_sizes) {
    auto x = random_vec<T>(n, -1.0, 1.0, 7);
    const Vec<T> x0 = x;
    x = x * T(2) + x;
    expect_elements(x, [&](std::size_t i) { return x0.data()[i] * T(2) + x0.data()[i]; }, 0);
  }
}

TYPED_TEST(Expr, ShiftedAliasingGoesThroughATemporary) {
  using T = TypeParam;
  for (std::size_t n : {std::size_t{17}, std::size_t{1000003}}) {
    auto x = random_vec<T>(n, -1.0, 1.0, 8);
    const Vec<T> x0 = x;
    // Each element takes its right neighbour plus the left one: a naive in-place loop
    // would read values it has already overwritten.
    x.items(1, n - 2) = x.items(2, n - 2) + x.items(0, n - 2);
    for (std::size_t i = 1; i + 1 < n; ++i)
      ASSERT_EQ(x.data()[i], x0.data()[i + 1] + x0.data()[i - 1]) << i;
    EXPECT_EQ(x.data()[0], x0.data()[0]);
    EXPECT_EQ(x.data()[n - 1], x0.data()[n - 1]);
  }
}

// Per-channel broadcast along the last axis, for channel counts that hit each path:
// C a multiple of the simd width, C dividing it, and neither.
template <class T, std::size_t C>
void check_per_channel(std::size_t batch) {
  Tensor<T, Shape<dyn, 3, 5, C>> x(batch), y(batch);
  Generator g(9);
  fill_uniform(x, g, -1, 1);
  Tensor<T, Shape<C>> scale, shift;
  fill_uniform(scale, g, 0.5, 2);
  fill_uniform(shift, g, -1, 1);
  y = x * per_channel(scale) + per_channel(shift);
  for (std::size_t i = 0; i < y.size(); ++i) {
    const std::size_t c = i % C;
    // The compiler may fuse the reference's multiply-add: allow the last bit.
    ASSERT_TRUE(close<T>(y.data()[i], x.data()[i] * scale(c) + shift(c), tolerance<T>)) << "C=" << C << " i=" << i;
  }
  // A per-channel vector alone fills every position of its channel.
  y = per_channel(shift);
  for (std::size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y.data()[i], shift(i % C));
}

TYPED_TEST(Expr, PerChannelBroadcast) {
  using T = TypeParam;
  for (std::size_t batch : {1, 2, 7}) {
    check_per_channel<T, 1>(batch);
    check_per_channel<T, 3>(batch);
    check_per_channel<T, 4>(batch);
    check_per_channel<T, 16>(batch);
    check_per_channel<T, 24>(batch);
    check_per_channel<T, 32>(batch);
  }
}

// Per-item broadcast: one value per item of the batch, for item sizes that are a
// multiple of the simd width (16 x 16) and that are not (3 x 5 x C).
template <class T, class S>
void check_per_item(std::size_t batch) {
  Tensor<T, S> x(batch), y(batch);
  Generator g(11);
  fill_uniform(x, g, -1, 1);
  std::vector<T> a(batch), b(batch);
  for (std::size_t i = 0; i < batch; ++i) {
    a[i] = T(0.5) + T(i);
    b[i] = -T(i) / T(3);
  }
  y = per_item<S>(a) * x + per_item<S>(b);
  for (std::size_t i = 0; i < y.size(); ++i) {
    const std::size_t n = i / S::item_size;
    ASSERT_TRUE(close<T>(y.data()[i], a[n] * x.data()[i] + b[n], tolerance<T>)) << "batch=" << batch << " i=" << i;
  }
  // A vector of another length than the batch is a ShapeError, not a wrong read.
  std::vector<T> short_vector(batch + 1);
  EXPECT_THROW(y = per_item<S>(short_vector) * x, ShapeError);
}

TYPED_TEST(Expr, PerItemBroadcast) {
  using T = TypeParam;
  for (std::size_t batch : {1, 2, 7}) {
    check_per_item<T, Shape<dyn, 16, 16>>(batch);
    check_per_item<T, Shape<dyn, 3, 5, 3>>(batch);
    check_per_item<T, Shape<dyn, 3, 5, 1>>(batch);
  }
}

TYPED_TEST(Expr, ThreadCountDoesNotChangeBits) {
  using T = TypeParam;
  const std::size_t n = 1000003;
  const auto x = random_vec<T>(n, -4.0, 4.0, 10);
  Vec<T> one(n), two(n);
  with_threads(1, [&] { one = silu(T(0.7) * x + T(0.1)) * tanh(x); });
  with_threads(2, [&] { two = silu(T(0.7) * x + T(0.1)) * tanh(x); });
  EXPECT_EQ(std::memcmp(one.data(), two.data(), n * sizeof(T)), 0);
}

TEST(ExprLazy, NothingIsComputedBeforeAssignment) {
  Vec<float> x(4);
  x = 1.f;
  auto e = x * 2.f + 1.f;  // captures x's storage, computes nothing
  x = 5.f;
  Vec<float> y(e);
  EXPECT_EQ(y(0), 11.f);
}

}  // namespace
