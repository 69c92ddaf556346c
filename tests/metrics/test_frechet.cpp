// The Fréchet distance against closed forms: Gaussians whose covariances commute
// (diagonal: d = |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2), 2x2 covariances that do
// not (tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)) for a 2x2 positive definite M), zero
// against itself, and the feature moments estimated from samples.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "diffuse/metrics/frechet.hpp"

namespace {

using diffuse::metrics::FeatureStats;
using diffuse::metrics::frechet_distance;

TEST(Frechet, DiagonalCovariancesMatchTheClosedForm) {
  Eigen::VectorXd mu1(3), mu2(3), a(3), b(3);
  mu1 << 0.5, -1.0, 2.0;
  mu2 << 0.0, 1.0, 2.5;
  a << 1.0, 4.0, 0.25;
  b << 9.0, 1.0, 0.25;
  double expected = (mu1 - mu2).squaredNorm();
  for (int i = 0; i < 3; ++i) expected += std::pow(std::sqrt(a[i]) - std::sqrt(b[i]), 2);
  EXPECT_NEAR(frechet_distance(mu1, a.asDiagonal().toDenseMatrix(), mu2, b.asDiagonal().toDenseMatrix()), expected,
              1e-12);
}

TEST(Frechet, NonCommutingCovariancesMatchTheClosedForm) {
  Eigen::MatrixXd s1(2, 2), s2(2, 2);
  s1 << 2.0, 0.8, 0.8, 1.0;
  s2 << 0.5, -0.3, -0.3, 3.0;
  ASSERT_GT((s1 * s2 - s2 * s1).norm(), 0.1);  // they do not commute
  // tr (S1^1/2 S2 S1^1/2)^1/2 = tr (S1 S2)^1/2, and for a 2x2 matrix with positive
  // eigenvalues tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)).
  const Eigen::MatrixXd m = s1 * s2;
  const double tr_sqrt = std::sqrt(m.trace() + 2.0 * std::sqrt(m.determinant()));
  const Eigen::VectorXd mu = Eigen::VectorXd::Zero(2);
  EXPECT_NEAR(frechet_distance(mu, s1, mu, s2), s1.trace() + s2.trace() - 2.0 * tr_sqrt, 1e-12);
  EXPECT_NEAR(frechet_distance(mu, s1, mu, s2), frechet_distance(mu, s2, mu, s1), 1e-12);  // symmetric
}

TEST(Frechet, IsZeroAgainstItselfAndSingularCovariancesAreFine) {
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  FeatureStats s(16);
  std::vector<float> rows(8 * 16);  // 8 vectors in 16 dimensions: a singular covariance
  for (float& v : rows) v = normal(rng);
  s.add(rows);
  // A singular covariance's zero eigenvalues come out of rounding as about +-1e-16 x its
  // scale, and their square roots as 1e-8: the distance is zero to about sqrt(epsilon).
  const double d = frechet_distance(s, s);
  EXPECT_NEAR(d, 0.0, 1e-6 * s.covariance().trace());
  EXPECT_TRUE(std::isfinite(d));
}

TEST(Frechet, SampleMomentsConvergeToTheGaussiansDistance) {
  // x ~ N(0, I), y = A z + m with z ~ N(0, I): the distance of the estimated moments
  // approaches the closed form as the samples grow (error ~ dim^2 / n).
  const int dim = 4, n = 200000;
  Eigen::MatrixXd a(dim, dim);
  a << 1.0, 0.2, 0.0, 0.0, 0.0, 0.5, 0.3, 0.0, 0.1, 0.0, 1.5, 0.0, 0.0, 0.0, 0.4, 0.8;
  Eigen::VectorXd m(dim);
  m << 0.3, 0.0, -0.2, 1.0;
  std::mt19937 rng(7);
  std::normal_distribution<double> normal;
  FeatureStats sx(dim), sy(dim);
  std::vector<float> xr(dim), yr(dim);
  for (int i = 0; i < n; ++i) {
    Eigen::VectorXd z(dim), x(dim);
    for (int k = 0; k < dim; ++k) z[k] = normal(rng), x[k] = normal(rng);
    const Eigen::VectorXd y = a * z + m;
    for (int k = 0; k < dim; ++k) xr[k] = float(x[k]), yr[k] = float(y[k]);
    sx.add(xr);
    sy.add(yr);
  }
  EXPECT_EQ(sx.count(), std::size_t(n));
  EXPECT_NEAR((sx.mean()).norm(), 0.0, 0.02);
  EXPECT_NEAR((sy.covariance() - a * a.transpose()).norm(), 0.0, 0.03);
  const double exact =
      frechet_distance(Eigen::VectorXd::Zero(dim), Eigen::MatrixXd::Identity(dim, dim), m, a * a.transpose());
  EXPECT_NEAR(frechet_distance(sx, sy), exact, 0.02);
}

TEST(Frechet, RefusesMismatchedInput) {
  FeatureStats a(3), b(4);
  EXPECT_THROW(a.add(std::vector<float>(7)), std::invalid_argument);  // not whole vectors
  EXPECT_THROW((void)a.mean(), std::logic_error);
  a.add(std::vector<float>(3, 1.f));
  EXPECT_THROW((void)a.covariance(), std::logic_error);  // one vector
  b.add(std::vector<float>(8, 1.f));
  EXPECT_THROW((void)frechet_distance(a, b), std::invalid_argument);
}

}  // namespace
