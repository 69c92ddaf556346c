// Training losses, separate from the preconditionings as in EDM (training/loss.py:
// VPLoss, VELoss, EDMLoss): each says how sigma is drawn during training and how much an
// image's squared denoising error weighs at that sigma, lambda(sigma). Precond::loss
// evaluates, per image, lambda(sigma_i) * sum over pixels (D(y_i + sigma_i n_i; sigma_i) - y_i)^2
// with one of them.
//
//              sigma for training                          lambda(sigma)
//   EDMLoss    ln sigma ~ N(P_mean, P_std^2)               (sigma^2 + sd^2) / (sigma sd)^2
//   VPLoss     t ~ U(epsilon_t, 1), sigma = sigma_VP(t)    1 / sigma^2
//   VELoss     ln sigma ~ U(ln sigma_min, ln sigma_max)    1 / sigma^2
//
// EDM's defaults: EDMLoss(P_mean = -1.2, P_std = 1.2, sigma_data = 0.5), VPLoss(beta_d =
// 19.9, beta_min = 0.1, epsilon_t = 1e-5), VELoss(sigma_min = 0.02, sigma_max = 100).
#pragma once

#include <cmath>
#include <concepts>

#include "diffuse/core/random.hpp"
#include "diffuse/diffusion/noise.hpp"
#include "diffuse/diffusion/schedule.hpp"

namespace diffuse::diffusion {

/// What Precond::loss and the trainer need of a loss: the training distribution of
/// sigma (one draw from a generator) and the weight lambda(sigma).
template <class L>
concept TrainingLoss = requires(const L& loss, Generator& g, double sigma) {
  { loss.training_sigma(g) } -> std::convertible_to<double>;
  { loss.weight(sigma) } -> std::convertible_to<double>;
};

/// EDM's loss (Karras et al. 2022, section 5 and Table 1).
struct EDMLoss {
  double p_mean = -1.2;  ///< mean of ln sigma (EDM's P_mean)
  double p_std = 1.2;  ///< standard deviation of ln sigma (EDM's P_std)
  double sigma_data = 0.5;  ///< standard deviation of the data

  /// ln sigma ~ N(p_mean, p_std^2).
  double training_sigma(Generator& g) const { return std::exp(p_mean + p_std * draw_normal(g)); }
  /// lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2: with EDM's
  /// preconditioning, lambda c_out^2 = 1, so every noise level weighs F's error equally.
  double weight(double sigma) const {
    const double sd2 = sigma_data * sigma_data;
    return (sigma * sigma + sd2) / (sigma * sigma * sd2);
  }
};

/// The VP loss (Song et al. 2021, DDPM++; EDM Table 1 "VP").
struct VPLoss {
  double beta_d = 19.9;  ///< slope of the linear beta(t) = beta_min + beta_d t
  double beta_min = 0.1;  ///< beta(0)
  double epsilon_t = 1e-5;  ///< smallest training t

  /// t ~ U(epsilon_t, 1), sigma = sigma_VP(t).
  double training_sigma(Generator& g) const {
    return vp_sigma(beta_d, beta_min, 1.0 + draw_uniform(g) * (epsilon_t - 1.0));
  }
  /// lambda(sigma) = 1 / sigma^2.
  double weight(double sigma) const { return 1.0 / (sigma * sigma); }
};

/// The VE loss (Song et al. 2021, NCSN++; EDM Table 1 "VE").
struct VELoss {
  double sigma_min = 0.02;  ///< smallest training sigma
  double sigma_max = 100.0;  ///< largest training sigma

  /// ln sigma ~ U(ln sigma_min, ln sigma_max).
  double training_sigma(Generator& g) const { return sigma_min * std::pow(sigma_max / sigma_min, draw_uniform(g)); }
  /// lambda(sigma) = 1 / sigma^2.
  double weight(double sigma) const { return 1.0 / (sigma * sigma); }
};

}  // namespace diffuse::diffusion
