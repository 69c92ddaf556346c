// EDM2's power-function EMA (Karras et al. 2024, "Analyzing and Improving the Training
// Dynamics of Diffusion Models", section 3 and appendix C; reference code NVlabs/edm2
// training/phema.py): an average of the weights over the whole run so far whose weight
// on the weights at time tau (in images) is proportional to tau^gamma,
//
//   ema_t = integral_0^t (gamma + 1) tau^gamma / t^(gamma + 1) p_tau dtau,
//
// kept step by step with beta = (1 - batch / t)^(gamma + 1), t the images seen after the
// step (eq. 127). Its width is given as sigma_rel, the standard deviation of that weight
// profile relative to t (eq. 123: sigma_rel^2 = (gamma + 1) / ((gamma + 2)^2 (gamma + 3))),
// 0 < sigma_rel < sqrt(1/12). Unlike the half-life EMA it has no ramp-up to choose: it
// forgets the initialisation by construction.
//
// Two such averages (EDM2: sigma_rel 0.05 and 0.10) saved at several times of a run are
// enough to reconstruct, after training, the average of any other width at any of those
// times (optim/posthoc_ema.hpp).
#pragma once

#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "diffuse/optim/ema.hpp"

namespace diffuse::optim {

/// The largest sigma_rel a power-function EMA can have (gamma = 0: the uniform average).
inline const double max_sigma_rel = std::sqrt(1.0 / 12.0);

/// sigma_rel of the power-function EMA of exponent gamma >= 0 (EDM2 eq. 123).
inline double power_ema_sigma_rel(double gamma) {
  return std::sqrt((gamma + 1.0) / ((gamma + 2.0) * (gamma + 2.0) * (gamma + 3.0)));
}

/// The exponent gamma >= 0 of the power-function EMA of width `sigma_rel` (EDM2 eq. 126:
/// the largest root of gamma^3 + 7 gamma^2 + (16 - s^-2) gamma + 12 - s^-2), found by
/// bisection on gamma >= 0, where sigma_rel decreases. Throws std::invalid_argument
/// unless 0 < sigma_rel < max_sigma_rel.
inline double power_ema_gamma(double sigma_rel) {
  if (!(sigma_rel > 0.0 && sigma_rel < max_sigma_rel))
    throw std::invalid_argument("diffuse::optim: an EMA width sigma_rel must be in (0, 0.2887), got " +
                                std::to_string(sigma_rel));
  double lo = 0.0, hi = 1.0;
  while (power_ema_sigma_rel(hi) > sigma_rel) hi *= 2.0;
  for (int i = 0; i < 200 && hi - lo > 1e-14 * hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    (power_ema_sigma_rel(mid) > sigma_rel ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

/// beta of a power-function EMA of exponent gamma for a step of `batch` images after which
/// `images_seen` images have been seen (EDM2 eq. 127); 0 at the first step.
inline double power_ema_beta(double gamma, double images_seen, double batch) {
  return std::pow(1.0 - batch / images_seen, gamma + 1.0);
}

/// The name prefix of the power EMA of width sigma_rel in a checkpoint: "phema050." for
/// 0.050 (thousandths, three digits).
inline std::string power_ema_prefix(double sigma_rel) {
  const long thousandths = std::lround(sigma_rel * 1000.0);
  std::string digits = std::to_string(thousandths);
  return "phema" + std::string(digits.size() < 3 ? 3 - digits.size() : 0, '0') + digits + ".";
}

/// Power-function EMAs of a model's weights, one per width (e.g. EDM2's 0.05 and 0.10).
class PowerEma {
 public:
  /// No averages.
  PowerEma() = default;
  /// Averages of widths `sigma_rels` (each in (0, max_sigma_rel), whole thousandths
  /// apart), started at the model's current weights. Throws std::invalid_argument for a
  /// width out of range or two widths with the same prefix.
  template <Parameterised Model>
  PowerEma(Model& model, std::vector<double> sigma_rels) : sigma_rels_(std::move(sigma_rels)) {
    for (std::size_t i = 0; i < sigma_rels_.size(); ++i) {
      gammas_.push_back(power_ema_gamma(sigma_rels_[i]));
      for (std::size_t j = 0; j < i; ++j)
        if (power_ema_prefix(sigma_rels_[i]) == power_ema_prefix(sigma_rels_[j]))
          throw std::invalid_argument("diffuse::optim::PowerEma: widths " + std::to_string(sigma_rels_[j]) + " and " +
                                      std::to_string(sigma_rels_[i]) + " are not whole thousandths apart");
      averages_.emplace_back(model);
    }
  }

  std::size_t size() const noexcept { return averages_.size(); }  ///< Number of averages.
  const std::vector<double>& sigma_rels() const noexcept { return sigma_rels_; }  ///< Their widths.
  Ema& average(std::size_t k) { return averages_.at(k); }  ///< Average k (its weights by name).

  /// Updates every average after a step of `batch` images, `images_seen` images seen
  /// after it.
  template <Parameterised Model>
  void update(Model& model, double images_seen, double batch) {
    for (std::size_t k = 0; k < averages_.size(); ++k)
      averages_[k].update(model, power_ema_beta(gammas_[k], images_seen, batch));
  }

  /// Calls f(std::string_view name, std::span<float> values) for every averaged
  /// parameter, named power_ema_prefix(sigma_rel) + its name.
  template <class F>
  void for_each_param(F&& f) {
    std::string name;
    for (std::size_t k = 0; k < averages_.size(); ++k) {
      const std::string prefix = power_ema_prefix(sigma_rels_[k]);
      averages_[k].for_each_param([&](std::string_view n, std::span<float> v) {
        name.assign(prefix).append(n);
        f(std::string_view(name), v);
      });
    }
  }

 private:
  std::vector<double> sigma_rels_, gammas_;
  std::vector<Ema> averages_;
};

}  // namespace diffuse::optim
