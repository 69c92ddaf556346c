// Linear multistep (k-diffusion sample_lms): the Adams-Bashforth method of order up to
// `order` (4) on the Karras ODE dx/dsigma = (x - D(x; sigma)) / sigma over an uneven grid:
// x_{i+1} = x_i + sum_j c_ij d_{i-j}, with c_ij the integral from sigma_i to sigma_{i+1} of
// the Lagrange basis polynomial of sigma_{i-j} over the last min(i+1, order) sigmas
// (exact by Gauss-Legendre quadrature; k-diffusion integrates numerically). The first
// steps use the orders the history allows. One denoiser call per step; deterministic.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <vector>

#include "diffuse/diffusion/samplers/common.hpp"

namespace diffuse::diffusion {

/// The weight of d_{i-j} in an Adams-Bashforth step of `order` from t[i] to t[i+1]: the
/// integral over [t[i], t[i+1]] of prod_{k != j, k < order} (tau - t[i-k]) / (t[i-j] - t[i-k])
/// (k-diffusion's linear_multistep_coeff). Needs order - 1 <= i; throws std::invalid_argument.
inline double linear_multistep_coeff(std::size_t order, std::span<const double> t, std::size_t i, std::size_t j) {
  if (order == 0 || order - 1 > i || j >= order || i + 1 >= t.size())
    throw std::invalid_argument("diffuse::diffusion::linear_multistep_coeff: order too high for the step");
  // 4-point Gauss-Legendre: exact for the basis polynomial (degree order - 1 <= 7).
  static constexpr std::array<double, 4> node = {-0.8611363115940526, -0.3399810435848563, 0.3399810435848563,
                                                 0.8611363115940526};
  static constexpr std::array<double, 4> weight = {0.3478548451374538, 0.6521451548625461, 0.6521451548625461,
                                                   0.3478548451374538};
  const double a = t[i], half = 0.5 * (t[i + 1] - t[i]);
  double sum = 0.0;
  for (std::size_t q = 0; q < 4; ++q) {
    const double tau = a + half * (node[q] + 1.0);
    double prod = 1.0;
    for (std::size_t k = 0; k < order; ++k)
      if (k != j) prod *= (tau - t[i - k]) / (t[i - j] - t[i - k]);
    sum += weight[q] * prod;
  }
  return half * sum;
}

/// Linear multistep ODE sampler (k-diffusion's lms).
template <Schedule Sched = KarrasSchedule>
struct Lms {
  Sched schedule{};  ///< the sigma schedule the steps follow
  std::size_t steps = 18;  ///< number of steps, one denoiser call each
  std::size_t order = 4;  ///< most past derivatives used (1: Euler)

  DIFFUSE_SAMPLER_ENTRY_POINTS

  /// One pass over `sigmas` (descending, ending in 0). x: (N, H, W, C), integrated in place.
  /// Draws no noise. A repeated sigma is a step of length 0 that leaves x and the history
  /// as they are.
  template <class D, class Batch, class Cb>
  void run(D& denoise, TensorView<float, Batch> x, std::span<const double> sigmas, NoiseSource<Batch>&,
           Cb& callback) const {
    const std::size_t n = sigmas.size() - 1, b = x.batch();
    const std::size_t keep = order < 1 ? 1 : order;
    // The history, newest first, and the sigmas it was taken at followed by the next one:
    // allocated here, so that the steps allocate nothing.
    std::vector<Tensor<float, Batch>> ds;
    ds.reserve(keep);
    for (std::size_t k = 0; k < keep; ++k) ds.emplace_back(b);
    std::vector<double> grid(keep + 1);
    std::size_t have = 0;
    Tensor<float, Batch> den(b);
    for (std::size_t i = 0; i < n; ++i) {
      const double sigma = sigmas[i];
      detail::call_denoiser(denoise, x, sigma, den.view());
      detail::call_back(callback, i, sigma, x, den.view());
      if (sigmas[i + 1] == sigma) continue;
      std::rotate(ds.begin(), ds.end() - 1, ds.end());  // the oldest buffer becomes the newest
      std::rotate(grid.begin(), grid.begin() + 1, grid.end() - 1);  // sigmas, oldest first
      ds.front() = (x - den) * static_cast<float>(1.0 / sigma);
      have = have < keep ? have + 1 : keep;
      grid[keep - 1] = sigma;
      grid[keep] = sigmas[i + 1];
      // The last `have` sigmas and the next one: grid[keep - have .. keep].
      const std::span<const double> t(grid.data() + (keep - have), have + 1);
      for (std::size_t j = 0; j < have; ++j)
        x = x + static_cast<float>(linear_multistep_coeff(have, t, have - 1, j)) * ds[j];
    }
  }
};

}  // namespace diffuse::diffusion
