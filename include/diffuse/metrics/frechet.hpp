// The Fréchet distance between two sets of feature vectors, each summarised by its mean
// and covariance: the squared 2-Wasserstein distance between the Gaussians of those
// moments (Dowson & Landau 1982), which FID (Heusel et al. 2017, "GANs Trained by a Two
// Time-Scale Update Rule Converge to a Local Nash Equilibrium", eq. 6) applies to
// Inception features:
//
//   d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2)
//
// The matrix square roots use symmetric eigendecompositions (Eigen's
// SelfAdjointEigenSolver, in double): S1^1/2 S2 S1^1/2 is symmetric positive
// semi-definite, so the trace of its square root is the sum of the square roots of its
// eigenvalues. (pytorch-fid's scipy.linalg.sqrtm(S1 S2) works on a non-symmetric product
// and needs an offset when it is near-singular; this form does not.) Eigenvalues that
// rounding makes slightly negative count as zero. With singular covariances (fewer
// vectors than dimensions) the square roots of the rounding in the zero eigenvalues
// leave an error of about sqrt(double epsilon) x the covariances' trace: a distance of a
// set to itself is then zero to about 1e-8 of the trace, and may be that much below zero.
//
// The number depends on the feature network: diffuse's is a classifier trained on the
// user's data (metrics/classifier.hpp), so distances compare only within one network,
// never with Inception FID.
#pragma once

#include <Eigen/Dense>
#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>

namespace diffuse::metrics {

/// Mean and covariance of feature vectors of dimension `dim`, accumulated in double, a
/// batch of rows at a time (in any order: the result is the same up to rounding).
class FeatureStats {
 public:
  /// No vectors yet, of dimension `dim` (> 0).
  explicit FeatureStats(std::size_t dim)
      : sum_(Eigen::VectorXd::Zero(Eigen::Index(dim))), outer_(Eigen::MatrixXd::Zero(Eigen::Index(dim), Eigen::Index(dim))) {
    if (dim == 0) throw std::invalid_argument("diffuse::metrics::FeatureStats: dimension 0");
  }

  /// Adds rows.size() / dim() vectors, stored row after row. Throws std::invalid_argument
  /// when rows.size() is not a multiple of dim().
  void add(std::span<const float> rows) {
    const auto d = Eigen::Index(dim());
    if (rows.size() % dim() != 0)
      throw std::invalid_argument("diffuse::metrics::FeatureStats::add: " + std::to_string(rows.size()) +
                                  " values are not whole vectors of " + std::to_string(dim()));
    const auto n = Eigen::Index(rows.size() / dim());
    const Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> x(rows.data(), n, d);
    const Eigen::MatrixXd xd = x.cast<double>();
    sum_ += xd.colwise().sum().transpose();
    outer_.selfadjointView<Eigen::Lower>().rankUpdate(xd.transpose());
    count_ += std::size_t(n);
  }

  std::size_t dim() const noexcept { return std::size_t(sum_.size()); }  ///< Dimension of the vectors.
  std::size_t count() const noexcept { return count_; }  ///< Vectors added so far.

  /// The mean vector (dim). Throws std::logic_error before the first vector.
  Eigen::VectorXd mean() const {
    if (count_ == 0) throw std::logic_error("diffuse::metrics::FeatureStats: no vectors");
    return sum_ / double(count_);
  }
  /// The unbiased covariance (dim x dim, divided by count - 1 as numpy.cov). Throws
  /// std::logic_error with fewer than two vectors.
  Eigen::MatrixXd covariance() const {
    if (count_ < 2) throw std::logic_error("diffuse::metrics::FeatureStats: a covariance needs two vectors or more");
    const Eigen::VectorXd mu = mean();
    Eigen::MatrixXd c = outer_.selfadjointView<Eigen::Lower>();
    c -= double(count_) * mu * mu.transpose();
    return c / double(count_ - 1);
  }

 private:
  Eigen::VectorXd sum_;    // sum of the vectors
  Eigen::MatrixXd outer_;  // sum of their outer products (lower triangle)
  std::size_t count_ = 0;
};

/// The trace of the square root of a symmetric positive semi-definite matrix.
inline double trace_sqrt_psd(const Eigen::MatrixXd& m) {
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(m, Eigen::EigenvaluesOnly);
  double t = 0.0;
  for (Eigen::Index i = 0; i < eig.eigenvalues().size(); ++i) t += std::sqrt(std::max(eig.eigenvalues()[i], 0.0));
  return t;
}

/// The square root of a symmetric positive semi-definite matrix.
inline Eigen::MatrixXd sqrt_psd(const Eigen::MatrixXd& m) {
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(m);
  const Eigen::VectorXd r = eig.eigenvalues().cwiseMax(0.0).cwiseSqrt();
  return eig.eigenvectors() * r.asDiagonal() * eig.eigenvectors().transpose();
}

/// The Fréchet distance (squared, as FID reports it) between the Gaussians N(mu1, s1)
/// and N(mu2, s2); s1 and s2 symmetric positive semi-definite of the size of the means.
/// Throws std::invalid_argument when the sizes differ.
inline double frechet_distance(const Eigen::VectorXd& mu1, const Eigen::MatrixXd& s1, const Eigen::VectorXd& mu2,
                               const Eigen::MatrixXd& s2) {
  const Eigen::Index d = mu1.size();
  if (mu2.size() != d || s1.rows() != d || s1.cols() != d || s2.rows() != d || s2.cols() != d)
    throw std::invalid_argument("diffuse::metrics::frechet_distance: means and covariances of different sizes");
  const Eigen::MatrixXd r1 = sqrt_psd(s1);
  Eigen::MatrixXd m = r1 * s2 * r1;
  m = 0.5 * (m + m.transpose());  // symmetric up to rounding; make it exactly so
  return (mu1 - mu2).squaredNorm() + s1.trace() + s2.trace() - 2.0 * trace_sqrt_psd(m);
}

/// The Fréchet distance between the feature sets behind `a` and `b` (each with at least
/// two vectors, of one dimension; std::invalid_argument otherwise).
inline double frechet_distance(const FeatureStats& a, const FeatureStats& b) {
  if (a.dim() != b.dim())
    throw std::invalid_argument("diffuse::metrics::frechet_distance: features of dimension " + std::to_string(a.dim()) +
                                " and " + std::to_string(b.dim()));
  if (a.count() < 2 || b.count() < 2)
    throw std::invalid_argument("diffuse::metrics::frechet_distance: needs at least two vectors on each side");
  return frechet_distance(a.mean(), a.covariance(), b.mean(), b.covariance());
}

}  // namespace diffuse::metrics
