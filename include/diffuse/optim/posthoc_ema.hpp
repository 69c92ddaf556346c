// Post-hoc EMA (EDM2, Karras et al. 2024, section 3.2 and appendix C.3, Algorithm 3;
// reference code NVlabs/edm2 training/phema.py): the power-function EMA of any width at
// time t, as the linear combination of saved power-function EMAs (snapshots of other
// widths and times) whose weight profile is closest, in L2, to the wanted one.
//
// A snapshot is a profile p(tau) = (gamma + 1) tau^gamma / t^(gamma + 1) on [0, t]. The
// inner product of two profiles has a closed form (integrate the product up to the
// earlier time):
//
//   <a, b> = (g_a + 1)(g_b + 1) min(t_a, t_b)^(g_a + g_b + 1) / ((g_a + g_b + 1) t_a^(g_a + 1) t_b^(g_b + 1))
//
// The coefficients x solve A x = b with A the snapshots' Gram matrix and b their inner
// products with the wanted profile; they are then scaled to sum to one, so that the result
// is an average of weights. Needs Eigen (the CMake target diffuse::eval).
#pragma once

#include <Eigen/Dense>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/optim/power_ema.hpp"

namespace diffuse::optim {

/// A power-function EMA profile: the average of width `sigma_rel` at `images` images.
struct EmaProfile {
  double images = 0;     ///< the time of the average, in images seen (> 0)
  double sigma_rel = 0;  ///< its width, in (0, max_sigma_rel)
};

/// The L2 inner product of two profiles (see the file-top comment).
inline double ema_profile_inner_product(const EmaProfile& a, const EmaProfile& b) {
  const double ga = power_ema_gamma(a.sigma_rel), gb = power_ema_gamma(b.sigma_rel);
  // Written with ratios <= 1 so that large times and exponents do not overflow.
  const double m = std::max(a.images, b.images);
  const double ratio = a.images < b.images ? std::pow(a.images / b.images, gb) : std::pow(b.images / a.images, ga);
  return (ga + 1.0) * (gb + 1.0) * ratio / ((ga + gb + 1.0) * m);
}

/// What posthoc_ema_coefficients found.
struct PosthocEma {
  std::vector<double> coefficients;  ///< one per snapshot, summing to one
  /// |sum_i x_i p_i - p| / |p|: how far the combined profile is from the wanted one (0:
  /// exact); above a few percent the snapshots do not cover that width or time well.
  double relative_error = 0;
};

/// The coefficients that combine `snapshots` into the profile `wanted` (EDM2 Algorithm 3).
/// Throws std::invalid_argument for no snapshots, a time <= 0 or a width out of range.
inline PosthocEma posthoc_ema_coefficients(const std::vector<EmaProfile>& snapshots, const EmaProfile& wanted) {
  if (snapshots.empty()) throw std::invalid_argument("diffuse::optim::posthoc_ema_coefficients: no snapshots");
  for (const EmaProfile& p : snapshots)
    if (!(p.images > 0)) throw std::invalid_argument("diffuse::optim::posthoc_ema_coefficients: a snapshot at time 0");
  if (!(wanted.images > 0)) throw std::invalid_argument("diffuse::optim::posthoc_ema_coefficients: a wanted time <= 0");
  const auto n = Eigen::Index(snapshots.size());
  Eigen::MatrixXd a(n, n);
  Eigen::VectorXd b(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    b[i] = ema_profile_inner_product(snapshots[std::size_t(i)], wanted);
    for (Eigen::Index j = 0; j < n; ++j) a(i, j) = ema_profile_inner_product(snapshots[std::size_t(i)], snapshots[std::size_t(j)]);
  }
  // The Gram matrix is symmetric positive semi-definite, singular when two snapshots
  // repeat a profile: a pivoting QR takes the least-squares solution then.
  Eigen::VectorXd x = a.colPivHouseholderQr().solve(b);
  x /= x.sum();
  const double pp = ema_profile_inner_product(wanted, wanted);
  const double err2 = x.dot(a * x) - 2.0 * x.dot(b) + pp;
  PosthocEma r;
  r.coefficients.assign(x.data(), x.data() + n);
  r.relative_error = std::sqrt(std::max(err2, 0.0) / pp);
  return r;
}

}  // namespace diffuse::optim
