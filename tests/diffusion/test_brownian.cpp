// BrownianNoise: standard normal increments, independent on disjoint steps, additive
// (a step split in two gives the same path), and per image.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include <diffuse/diffusion/brownian.hpp>
#include <diffuse/tensor.hpp>

namespace dd = diffuse::diffusion;
using diffuse::dyn;
using diffuse::Shape;
using diffuse::Tensor;
using Pixels = Shape<dyn, 64>;

TEST(Brownian, IncrementsAreStandardNormalAndIndependent) {
  const std::size_t n = 400;
  dd::BrownianNoise<Pixels> w(3, 0, n, 0.002, 80.0);
  Tensor<float, Pixels> a(n), b(n);
  w.draw(80.0, 10.0, a.view());
  w.draw(10.0, 0.5, b.view());
  double sa = 0, sa2 = 0, sb2 = 0, sab = 0;
  const double m = double(a.size());
  for (std::size_t k = 0; k < a.size(); ++k) {
    sa += a.data()[k], sa2 += double(a.data()[k]) * a.data()[k];
    sb2 += double(b.data()[k]) * b.data()[k], sab += double(a.data()[k]) * b.data()[k];
  }
  EXPECT_NEAR(sa / m, 0.0, 5.0 / std::sqrt(m));
  EXPECT_NEAR(sa2 / m, 1.0, 5.0 * std::sqrt(2.0 / m));
  EXPECT_NEAR(sb2 / m, 1.0, 5.0 * std::sqrt(2.0 / m));
  EXPECT_NEAR(sab / m, 0.0, 5.0 / std::sqrt(m));  // disjoint steps: uncorrelated
}

TEST(Brownian, ASplitStepSumsToTheWholeStep) {
  dd::BrownianNoise<Pixels> w(5, 0, 3, 0.002, 80.0);
  Tensor<float, Pixels> whole(3), first(3), second(3);
  w.draw(20.0, 1.3, whole.view());
  w.draw(20.0, 4.1, first.view());
  w.draw(4.1, 1.3, second.view());
  for (std::size_t k = 0; k < whole.size(); ++k) {
    const double sum = std::sqrt(20.0 - 4.1) * first.data()[k] + std::sqrt(4.1 - 1.3) * second.data()[k];
    EXPECT_NEAR(std::sqrt(20.0 - 1.3) * whole.data()[k], sum, 1e-4);
  }
}

TEST(Brownian, EachImageHasItsOwnPathWhateverTheBatch) {
  dd::BrownianNoise<Pixels> all(7, 0, 5, 0.01, 10.0), tail(7, 3, 2, 0.01, 10.0);
  Tensor<float, Pixels> x(5), y(2);
  all.draw(9.0, 2.0, x.view());
  tail.draw(9.0, 2.0, y.view());
  for (std::size_t k = 0; k < y.size(); ++k) EXPECT_EQ(x.data()[3 * 64 + k], y.data()[k]);
  EXPECT_NE(x.data()[0], x.data()[64]);  // images 0 and 1 differ
  EXPECT_THROW(all.draw(2.0, 2.0, x.view()), std::invalid_argument);
  EXPECT_THROW((dd::BrownianNoise<Pixels>(7, 0, 1, 5.0, 5.0)), std::invalid_argument);
}
