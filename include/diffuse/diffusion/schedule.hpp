// Noise-level (sigma) schedules for sampling: the discretisation of the ODE/SDE time.
//
// Every schedule is a small value type with its parameters as public members and one
// function, `sigmas(n)`, that returns the n noise levels of an n-step sampler in
// descending order followed by a final 0 (k-diffusion's convention; n + 1 numbers in
// all). Sigmas are computed in double; samplers turn them into float only where a
// denoiser is called. Notation follows Karras et al. 2022 (EDM, arXiv 2206.00364), where
// the noisy image is x = y + sigma * n (no input scaling, s(t) = 1).
//
//   KarrasSchedule       EDM eq. 5, sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho
//   ExponentialSchedule  uniform in log sigma (k-diffusion get_sigmas_exponential)
//   VeSchedule           EDM Table 1 "VE" discretisation (geometric in sigma^2 = t, so also
//                        uniform in log sigma), with the VE defaults smin = 0.02, smax = 100
//   VpSchedule           EDM Table 1 "VP": continuous linear-beta DDPM, t from 1 to eps_s,
//                        sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)
//   DdpmSchedule         the discrete DDPM schedule (T = 1000 linear betas) at n evenly
//                        spaced training timesteps: the sigmas DDIM usually runs on
//   CosineSchedule       EDM Table 1 "iDDPM" discretisation of the cosine schedule
//                        (Nichol & Dhariwal 2021): the M = 1000 levels u_j, kept within
//                        [smin, smax], n of them chosen evenly by index
//
// This file does not sample anything; see sampler.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <numbers>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace diffuse::diffusion {

/// A schedule: `s.sigmas(out)` fills out.size() - 1 descending sigmas and a final 0.
template <class S>
concept Schedule = requires(const S& s, std::span<double> out) {
  { s.sigmas(out) } -> std::same_as<void>;
};

namespace detail {

inline void check_steps(std::size_t points, const char* who) {
  if (points < 2)
    throw std::invalid_argument(std::string("diffuse::diffusion::") + who + ": need at least one step");
}

// i / (n - 1) for i in [0, n); 0 for a one-step schedule (so its only sigma is sigma_max).
inline double ramp(std::size_t i, std::size_t n) {
  return n > 1 ? static_cast<double>(i) / static_cast<double>(n - 1) : 0.0;
}

// The vector-returning form of every schedule's sigmas(span).
template <class S>
std::vector<double> make_sigmas(const S& s, std::size_t n) {
  std::vector<double> out(n + 1);
  s.sigmas(std::span<double>(out));
  return out;
}

}  // namespace detail

/// sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1) of the VP SDE with linear
/// beta(t) = beta_min + beta_d t (EDM Table 1 "VP"; Song et al. 2021).
inline double vp_sigma(double beta_d, double beta_min, double t) {
  return std::sqrt(std::expm1(0.5 * beta_d * t * t + beta_min * t));
}

/// t(sigma), the inverse of vp_sigma.
inline double vp_t(double beta_d, double beta_min, double sigma) {
  return (std::sqrt(beta_min * beta_min + 2.0 * beta_d * std::log1p(sigma * sigma)) - beta_min) / beta_d;
}

/// EDM's schedule (Karras et al. 2022, eq. 5): evenly spaced in sigma^(1/rho).
struct KarrasSchedule {
  double sigma_min = 0.002;  ///< last non-zero sigma
  double sigma_max = 80.0;  ///< first sigma
  double rho = 7.0;  ///< EDM's rho: larger values put more steps near sigma_min

  /// The n sigmas of an n-step sampler, descending, then 0 (n + 1 numbers).
  std::vector<double> sigmas(std::size_t n) const { return detail::make_sigmas(*this, n); }
  /// Fills `out` (n + 1 numbers) with n sigmas from sigma_max to sigma_min, then 0.
  void sigmas(std::span<double> out) const {
    detail::check_steps(out.size(), "KarrasSchedule");
    const std::size_t n = out.size() - 1;
    const double a = std::pow(sigma_max, 1.0 / rho), b = std::pow(sigma_min, 1.0 / rho);
    for (std::size_t i = 0; i < n; ++i) out[i] = std::pow(a + detail::ramp(i, n) * (b - a), rho);
    out[n] = 0.0;
  }
};

/// Evenly spaced in log sigma, from sigma_max to sigma_min.
struct ExponentialSchedule {
  double sigma_min = 0.002;  ///< last non-zero sigma
  double sigma_max = 80.0;  ///< first sigma

  /// The n sigmas of an n-step sampler, descending, then 0 (n + 1 numbers).
  std::vector<double> sigmas(std::size_t n) const { return detail::make_sigmas(*this, n); }
  /// Fills `out` (n + 1 numbers) with n sigmas from sigma_max to sigma_min, then 0.
  void sigmas(std::span<double> out) const {
    detail::check_steps(out.size(), "ExponentialSchedule");
    const std::size_t n = out.size() - 1;
    const double a = std::log(sigma_max), b = std::log(sigma_min);
    for (std::size_t i = 0; i < n; ++i) out[i] = std::exp(a + detail::ramp(i, n) * (b - a));
    out[n] = 0.0;
  }
};

/// EDM's VE discretisation (Table 1; Song et al. 2021 SMLD): t_i = smax^2 (smin^2/smax^2)^(i/(n-1)),
/// sigma = sqrt(t). Geometric in sigma, like ExponentialSchedule, with the VE defaults.
struct VeSchedule {
  double sigma_min = 0.02;  ///< last non-zero sigma (EDM's VE default)
  double sigma_max = 100.0;  ///< first sigma (EDM's VE default)

  /// The n sigmas of an n-step sampler, descending, then 0 (n + 1 numbers).
  std::vector<double> sigmas(std::size_t n) const { return detail::make_sigmas(*this, n); }
  /// Fills `out` (n + 1 numbers) with n sigmas from sigma_max to sigma_min, then 0.
  void sigmas(std::span<double> out) const {
    detail::check_steps(out.size(), "VeSchedule");
    const std::size_t n = out.size() - 1;
    const double smax2 = sigma_max * sigma_max, ratio = (sigma_min * sigma_min) / smax2;
    for (std::size_t i = 0; i < n; ++i) out[i] = std::sqrt(smax2 * std::pow(ratio, detail::ramp(i, n)));
    out[n] = 0.0;
  }
};

/// EDM's VP discretisation (Table 1): t_i evenly spaced from 1 down to eps_s and
/// sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1), the continuous limit of DDPM's
/// linear betas (beta_min = 1000 * 1e-4 = 0.1, beta_d = 1000 * (0.02 - 1e-4) = 19.9).
struct VpSchedule {
  double beta_d = 19.9;  ///< slope of the linear beta(t) = beta_min + beta_d t
  double beta_min = 0.1;  ///< beta(0)
  double eps_s = 1e-3;  ///< the last t (EDM's epsilon_s)

  /// sigma(t) of the VP SDE.
  double sigma(double t) const { return vp_sigma(beta_d, beta_min, t); }
  /// t(sigma), the inverse of sigma(t).
  double t(double sigma) const { return vp_t(beta_d, beta_min, sigma); }
  /// The VP schedule whose end points are sigma(1) = sigma_max and sigma(eps_s) = sigma_min
  /// (how EDM's generate.py sets beta_d and beta_min for a given sigma range).
  static VpSchedule from_range(double sigma_min, double sigma_max, double eps_s = 1e-3) {
    VpSchedule s;
    s.eps_s = eps_s;
    const double lmax = std::log1p(sigma_max * sigma_max), lmin = std::log1p(sigma_min * sigma_min);
    s.beta_d = 2.0 * (lmin / eps_s - lmax) / (eps_s - 1.0);
    s.beta_min = lmax - 0.5 * s.beta_d;
    return s;
  }

  /// The n sigmas of an n-step sampler, descending, then 0 (n + 1 numbers).
  std::vector<double> sigmas(std::size_t n) const { return detail::make_sigmas(*this, n); }
  /// Fills `out` (n + 1 numbers) with sigma(t_i), t_i evenly spaced from 1 to eps_s, then 0.
  void sigmas(std::span<double> out) const {
    detail::check_steps(out.size(), "VpSchedule");
    const std::size_t n = out.size() - 1;
    for (std::size_t i = 0; i < n; ++i) out[i] = sigma(1.0 + detail::ramp(i, n) * (eps_s - 1.0));
    out[n] = 0.0;
  }
};

/// The discrete DDPM schedule (Ho et al. 2020): T linear betas from beta_start to beta_end,
/// alpha_bar_t = prod_{s<=t} (1 - beta_s), sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)
/// (the VE view of x_t / sqrt(alpha_bar_t)). An n-step sampler visits the timesteps
/// round((T - 1) (1 - i/(n-1))), i = 0..n-1 ("linspace" spacing), i.e. from T-1 down to 0.
struct DdpmSchedule {
  double beta_start = 1e-4;  ///< beta of the first timestep
  double beta_end = 0.02;  ///< beta of the last timestep
  std::size_t timesteps = 1000;  ///< T, the number of training timesteps

  /// sigma of training timestep t in [0, timesteps).
  double sigma_at(std::size_t t) const {
    double log_abar = 0.0;
    for (std::size_t s = 0; s <= t; ++s) {
      const double beta = beta_start + (beta_end - beta_start) * detail::ramp(s, timesteps);
      log_abar += std::log1p(-beta);
    }
    return std::sqrt(std::expm1(-log_abar));
  }

  /// The n sigmas of an n-step sampler, descending, then 0 (n + 1 numbers).
  std::vector<double> sigmas(std::size_t n) const { return detail::make_sigmas(*this, n); }
  /// Fills `out` (n + 1 numbers) with the sigmas of n timesteps from T-1 down to 0, then 0.
  /// Throws std::invalid_argument when n > timesteps.
  void sigmas(std::span<double> out) const {
    detail::check_steps(out.size(), "DdpmSchedule");
    const std::size_t n = out.size() - 1;
    if (n > timesteps)
      throw std::invalid_argument("diffuse::diffusion::DdpmSchedule: " + std::to_string(n) + " steps asked for, but it has " +
                                  std::to_string(timesteps) + " timesteps");
    // sigma of every timestep, by one running product.
    std::vector<double> table(timesteps);
    double log_abar = 0.0;
    for (std::size_t s = 0; s < timesteps; ++s) {
      log_abar += std::log1p(-(beta_start + (beta_end - beta_start) * detail::ramp(s, timesteps)));
      table[s] = std::sqrt(std::expm1(-log_abar));
    }
    for (std::size_t i = 0; i < n; ++i) {
      const double t = static_cast<double>(timesteps - 1) * (1.0 - detail::ramp(i, n));
      out[i] = table[static_cast<std::size_t>(std::nearbyint(t))];
    }
    out[n] = 0.0;
  }
};

/// EDM's iDDPM discretisation of the cosine schedule (Table 1 and Appendix C.3.4):
/// alpha_bar(j) = sin^2(pi/2 j / (M (C2 + 1))), u_M = 0,
/// u_{j-1} = sqrt((u_j^2 + 1) / max(alpha_bar(j-1) / alpha_bar(j), C1) - 1);
/// the u_j within [sigma_min, sigma_max] are kept (descending) and the n-step schedule takes
/// those at indices round(i (len - 1) / (n - 1)) (round half to even, as torch.round).
struct CosineSchedule {
  double sigma_min = 0.002;  ///< smallest level kept
  double sigma_max = 81.0;  ///< largest level kept
  std::size_t M = 1000;  ///< number of levels (iDDPM's timesteps)
  double C1 = 0.001;  ///< lower clamp of alpha_bar(j-1) / alpha_bar(j)
  double C2 = 0.008;  ///< offset of the cosine (Nichol & Dhariwal's s)

  /// All M + 1 levels u_0 > u_1 > ... > u_M = 0.
  std::vector<double> levels() const {
    std::vector<double> u(M + 1, 0.0);
    auto alpha_bar = [&](double j) {
      const double s = std::sin(0.5 * std::numbers::pi * j / static_cast<double>(M) / (C2 + 1.0));
      return s * s;
    };
    for (std::size_t j = M; j > 0; --j) {
      const double ratio = std::max(alpha_bar(static_cast<double>(j - 1)) / alpha_bar(static_cast<double>(j)), C1);
      u[j - 1] = std::sqrt((u[j] * u[j] + 1.0) / ratio - 1.0);
    }
    return u;
  }

  /// How many levels lie in [sigma_min, sigma_max]: the most steps sigmas() can give.
  std::size_t levels_within_range() const {
    std::size_t k = 0;
    for (double u : levels()) k += u >= sigma_min && u <= sigma_max;
    return k;
  }

  /// The n sigmas of an n-step sampler, descending, then 0 (n + 1 numbers).
  std::vector<double> sigmas(std::size_t n) const { return detail::make_sigmas(*this, n); }
  /// Fills `out` (n + 1 numbers) with n of the kept levels, evenly spaced by index, then 0.
  /// Throws std::invalid_argument when fewer than n levels lie in [sigma_min, sigma_max].
  void sigmas(std::span<double> out) const {
    detail::check_steps(out.size(), "CosineSchedule");
    const std::size_t n = out.size() - 1;
    std::vector<double> kept;
    for (double u : levels())
      if (u >= sigma_min && u <= sigma_max) kept.push_back(u);
    if (kept.size() < n)
      throw std::invalid_argument("diffuse::diffusion::CosineSchedule: " + std::to_string(n) + " steps asked for, but only " +
                                  std::to_string(kept.size()) + " of its levels lie in [sigma_min, sigma_max] = [" +
                                  std::to_string(sigma_min) + ", " + std::to_string(sigma_max) + "]");
    for (std::size_t i = 0; i < n; ++i) {
      const double idx = n > 1 ? static_cast<double>(kept.size() - 1) / static_cast<double>(n - 1) * static_cast<double>(i) : 0.0;
      out[i] = kept[static_cast<std::size_t>(std::nearbyint(idx))];
    }
    out[n] = 0.0;
  }
};

}  // namespace diffuse::diffusion
