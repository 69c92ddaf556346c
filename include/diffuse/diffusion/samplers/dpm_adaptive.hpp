// DPM-Solver-12 and DPM-Solver-23 with adaptive step size (Lu et al. 2022, "DPM-Solver: A
// Fast ODE Solver for Diffusion Probabilistic Model Sampling in Around 10 Steps", section 4
// and appendix; k-diffusion's sample_dpm_adaptive).
//
// In t = -log sigma, DPM-Solver integrates the linear part of the ODE exactly and the
// noise prediction eps = (x - D(x; sigma)) / sigma by a Taylor expansion. Each attempt
// from s to t = s + h takes a step of order `order` and one of order `order` - 1 from the
// same evaluations (order 3: 3 denoiser calls, order 2: 2):
//   delta = max(atol, rtol max(|x_low|, |x_prev|)),  error = RMS((x_low - x_high) / delta)
// and a PID controller (k-diffusion's PIDStepSizeController; the defaults are its pure
// integral controller) scales h by 1 + atan(factor - 1), factor = error^(-1/order) for
// the defaults; the attempt is accepted when that factor is at least accept_safety.
// Accepted steps keep x_high; eta > 0 steps to the ancestral sigma_down and adds fresh
// noise (k-diffusion's eta).
//
// Unlike k-diffusion, every image has its own step size and its own error: an image's
// result does not depend on the other images of the batch (k-diffusion measures one error
// over the whole batch). The denoiser is called on the whole batch, each image at its own
// sigma, so it must take one sigma per image: denoise(x, std::span<const float> sigma,
// out) (Precond, Guided and Inpainting do); images that have arrived wait at sigma_min,
// so a batch costs the evaluations of its slowest image. The range is the schedule's first and
// last non-zero sigma (the steps between are not used); after reaching sigma_min, one
// Euler step to 0 as every sampler here ends with (k-diffusion returns x at sigma_min).
// run() returns the work done (AdaptiveStats); the callback sees that last step only.
// A run allocates its scratch (about eight batches of images) once.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/diffusion/samplers/common.hpp"

namespace diffuse::diffusion {

/// What an adaptive sampling run did.
struct AdaptiveStats {
  std::size_t images = 0;          ///< images sampled
  std::size_t evaluations = 0;     ///< denoiser evaluations of single images, summed over the images
  std::size_t max_evaluations = 0;  ///< the most any one image needed
  std::size_t accepted = 0;        ///< accepted steps, summed over the images
  std::size_t rejected = 0;        ///< rejected attempts, summed over the images
  /// Mean denoiser evaluations per image (the NFE, the final Euler step included).
  double nfe() const noexcept { return images ? static_cast<double>(evaluations) / static_cast<double>(images) : 0.0; }
};

/// A denoiser that takes one sigma per image: denoise(x, sigma /*[N]*/, out).
template <class D, class Batch>
concept PerImageDenoiser =
    requires(D& d, TensorView<const float, Batch> x, std::span<const float> sigma, TensorView<float, Batch> out) {
      d(x, sigma, out);
    };

/// Adaptive-step DPM-Solver (k-diffusion's dpm_adaptive); see the top of this header.
template <Schedule Sched = KarrasSchedule>
struct DpmAdaptive {
  Sched schedule{};  ///< gives the range: its first and its last non-zero sigma
  std::size_t steps = 18;  ///< only for the schedule's range (the steps are chosen adaptively)
  int order = 3;  ///< 3: DPM-Solver-23 (3 calls per attempt), 2: DPM-Solver-12 (2 calls)
  double rtol = 0.05;  ///< relative tolerance (k-diffusion's default)
  double atol = 0.0078;  ///< absolute tolerance, in data units (k-diffusion's default: ~1/128)
  double h_init = 0.05;  ///< first step in t = -log sigma
  double pcoeff = 0.0;  ///< PID controller: proportional coefficient
  double icoeff = 1.0;  ///< integral coefficient
  double dcoeff = 0.0;  ///< derivative coefficient
  double accept_safety = 0.81;  ///< accept an attempt when the step factor is at least this
  double eta = 0.0;  ///< ancestral noise (0: deterministic)
  double s_noise = 1.0;  ///< scale of the fresh noise
  std::size_t max_attempts = 100'000;  ///< attempts per image before giving up (std::runtime_error)

  /** Draws x = sigma_0 n (per-image streams of `seed` from `first_image`) and integrates it to 0. */
  template <class D, class Batch, class Cb = NoCallback>
  AdaptiveStats sample(D&& denoise, TensorView<float, Batch> x, std::uint64_t seed, std::uint64_t first_image = 0,
                       Cb&& callback = {}) const {
    return detail::sample_impl(*this, denoise, x, seed, first_image, callback, true);
  }
  /** Integrates x, already at sigma_0, to 0 (the later noise is the one sample() would draw). */
  template <class D, class Batch, class Cb = NoCallback>
  AdaptiveStats sample_from(D&& denoise, TensorView<float, Batch> x, std::uint64_t seed, std::uint64_t first_image = 0,
                            Cb&& callback = {}) const {
    return detail::sample_impl(*this, denoise, x, seed, first_image, callback, false);
  }

  /// Integrates x (N, H, W, C), at sigmas.front(), to 0. Throws std::invalid_argument for
  /// an order other than 2 or 3 or a tolerance, first step or safety factor that is not
  /// positive, and std::runtime_error when the denoiser's output makes an error estimate
  /// NaN or infinite (the step size would never settle) or an image is still short of
  /// sigma_min after max_attempts attempts.
  template <class D, class Batch, class Cb>
  AdaptiveStats run(D& denoise, TensorView<float, Batch> x, std::span<const double> sigmas, NoiseSource<Batch>& noise,
                    Cb& callback) const {
    static_assert(PerImageDenoiser<D, Batch>,
                  "diffuse::diffusion::DpmAdaptive: the denoiser must also take one sigma per image, "
                  "denoise(x, std::span<const float> sigma, out), as Precond, Guided and Inpainting do");
    if (order != 2 && order != 3)
      throw std::invalid_argument("diffuse::diffusion::DpmAdaptive: order must be 2 or 3, not " + std::to_string(order));
    if (!(rtol > 0.0) || !(atol > 0.0) || !(h_init > 0.0) || !(accept_safety > 0.0))
      throw std::invalid_argument("diffuse::diffusion::DpmAdaptive: rtol, atol, h_init and accept_safety must be positive");
    const std::size_t b = x.batch();
    AdaptiveStats stats;
    stats.images = b;
    std::vector<std::size_t> evals(b, 0);
    double sigma_min = 0.0;
    for (double s : sigmas)
      if (s > 0.0) sigma_min = s;
    if (sigma_min > 0.0 && sigmas.front() > sigma_min) integrate(denoise, x, sigmas.front(), sigma_min, noise, stats, evals);
    if (sigma_min > 0.0 && sigmas.back() == 0.0) {  // Euler from sigma_min to 0
      Tensor<float, Batch> den(b);
      detail::call_denoiser(denoise, x, sigma_min, den.view());
      detail::call_back(callback, 0, sigma_min, x, den.view());
      x = den;
      for (auto& e : evals) ++e;
    }
    for (std::size_t e : evals) {
      stats.evaluations += e;
      stats.max_evaluations = std::max(stats.max_evaluations, e);
    }
    return stats;
  }

 private:
  // k-diffusion's PIDStepSizeController, one per image.
  struct Controller {
    double h, b1, b2, b3;
    double errs[3] = {0, 0, 0};
    bool started = false;
    // Scales h by the factor the error asks for; true when the attempt is accepted.
    bool propose(double error, double accept_safety) {
      const double inv = 1.0 / (error + 1e-8);
      if (!started) errs[0] = errs[1] = errs[2] = inv, started = true;
      errs[0] = inv;
      double factor = std::pow(errs[0], b1) * std::pow(errs[1], b2) * std::pow(errs[2], b3);
      factor = 1.0 + std::atan(factor - 1.0);  // limiter: at most 1 + pi/2
      const bool accept = factor >= accept_safety;
      if (accept) errs[2] = errs[1], errs[1] = errs[0];
      h *= factor;
      return accept;
    }
  };

  // The adaptive part, from sigma_max to sigma_min. Every call of the denoiser sees the
  // whole batch (a guided or inpainting denoiser knows its images by their place in it);
  // an image that has arrived is evaluated at sigma_min and left as it is.
  template <class D, class Batch>
  void integrate(D& denoise, TensorView<float, Batch> x, double sigma_max, double sigma_min, NoiseSource<Batch>& noise,
                 AdaptiveStats& stats, std::vector<std::size_t>& evals) const {
    const std::size_t b = x.batch();
    const double t_end = -std::log(sigma_min);
    const double q = eta > 0.0 ? 1.5 : static_cast<double>(order);  // the controller's order (k-diffusion's)
    std::vector<double> s(b, -std::log(sigma_max));
    std::vector<Controller> pid(b, Controller{h_init, (pcoeff + icoeff + dcoeff) / q, -(pcoeff + 2.0 * dcoeff) / q,
                                              dcoeff / q});
    Tensor<float, Batch> prev(b), den(b), eps(b), eps1(b), eps2(order == 3 ? b : 0), u(b), low(b), high(b), z(1);
    prev = x;  // k-diffusion's x_prev starts at x
    // Per image: the sigmas of an evaluation and the coefficients of the updates (0 for
    // an image that has arrived, so that its x stays).
    std::vector<float> sig(b), c_eps(b), c_d1(b), c_d2(b);
    std::vector<double> h(b), t_next(b), sigma_up(b);
    std::vector<char> running(b);
    std::vector<std::size_t> attempts(b, 0);
    std::vector<float> inv(b);  // 1 / sig, scratch of eps_at
    const auto per = [](const std::vector<float>& c) { return per_item<Batch>(std::span<const float>(c)); };
    // sig = sigma at s + r h (sigma_min for an image that has arrived)
    const auto sigmas_at = [&](double r) {
      for (std::size_t i = 0; i < b; ++i) sig[i] = static_cast<float>(std::exp(-(s[i] + (running[i] ? r * h[i] : 0.0))));
    };
    for (;;) {
      std::size_t n = 0;
      for (std::size_t i = 0; i < b; ++i) n += running[i] = s[i] < t_end - 1e-5;
      if (n == 0) break;
      for (std::size_t i = 0; i < b; ++i) {
        h[i] = 0.0;
        sigma_up[i] = 0.0;
        if (!running[i]) continue;
        const double t = std::min(t_end, s[i] + pid[i].h);
        double to = t;
        if (eta > 0.0) {  // step to sigma_down, then noise up to sigma(t)
          const AncestralStep a = ancestral_step(std::exp(-s[i]), std::exp(-t), eta);
          to = std::min(t_end, -std::log(a.sigma_down));
          sigma_up[i] = std::sqrt(std::max(0.0, std::exp(-2.0 * t) - std::exp(-2.0 * to)));
        }
        t_next[i] = t;
        h[i] = to - s[i];
      }
      // eps at s, then at the first intermediate point s + r1 h
      const double r1 = order == 3 ? 1.0 / 3.0 : 0.5;
      sigmas_at(0.0);
      eps_at(denoise, x, sig, inv, den.view(), eps.view());
      for (std::size_t i = 0; i < b; ++i) c_eps[i] = running[i] ? static_cast<float>(sig_at(s[i], r1, h[i]) * std::expm1(r1 * h[i])) : 0.f;
      u = x - per(c_eps) * eps;
      sigmas_at(r1);
      eps_at(denoise, u.view(), sig, inv, den.view(), eps1.view());
      // sigma(t) expm1(h): the first-order part of every step to t; DPM-Solver-2's correction
      for (std::size_t i = 0; i < b; ++i) {
        const double st = running[i] ? sig_at(s[i], 1.0, h[i]) * std::expm1(h[i]) : 0.0;
        c_eps[i] = static_cast<float>(st);
        c_d1[i] = static_cast<float>(st / (2.0 * r1));
      }
      if (order == 2) {
        low = x - per(c_eps) * eps;                    // DPM-Solver-1
        high = low - per(c_d1) * (eps1 - eps);         // DPM-Solver-2 (r1 = 1/2)
      } else {
        low = x - per(c_eps) * eps - per(c_d1) * (eps1 - eps);  // DPM-Solver-2 (r1 = 1/3)
        const double r2 = 2.0 / 3.0;
        for (std::size_t i = 0; i < b; ++i) {
          if (!running[i]) {
            c_d1[i] = c_d2[i] = 0.f;
            continue;
          }
          const double s2 = sig_at(s[i], r2, h[i]), e2 = std::expm1(r2 * h[i]);
          c_d1[i] = static_cast<float>(s2 * e2);
          c_d2[i] = static_cast<float>(s2 * (r2 / r1) * (e2 / (r2 * h[i]) - 1.0));
        }
        u = x - per(c_d1) * eps - per(c_d2) * (eps1 - eps);
        sigmas_at(r2);
        eps_at(denoise, u.view(), sig, inv, den.view(), eps2.view());
        for (std::size_t i = 0; i < b; ++i)
          c_d2[i] = running[i] ? static_cast<float>(sig_at(s[i], 1.0, h[i]) / r2 * (std::expm1(h[i]) / h[i] - 1.0)) : 0.f;
        high = x - per(c_eps) * eps - per(c_d2) * (eps2 - eps);  // DPM-Solver-3
      }
      update_host(low);
      update_host(high);
      update_host(prev);
      for (std::size_t i = 0; i < b; ++i) {
        if (!running[i]) continue;
        evals[i] += static_cast<std::size_t>(order);
        const float* lo = low.item(i).data();
        const float* hi = high.item(i).data();
        const float* pr = prev.item(i).data();
        double sum = 0.0;
        for (std::size_t j = 0; j < Batch::item_size; ++j) {
          const double delta = std::max(atol, rtol * std::max(std::abs(double(lo[j])), std::abs(double(pr[j]))));
          const double e = (double(lo[j]) - double(hi[j])) / delta;
          sum += e * e;
        }
        const double error = std::sqrt(sum / static_cast<double>(Batch::item_size));
        if (!std::isfinite(error))
          throw std::runtime_error("diffuse::diffusion::DpmAdaptive: image " + std::to_string(i) +
                                   ": the denoiser gave NaN or infinite values at sigma " + std::to_string(sig[i]) +
                                   " or near it");
        if (++attempts[i] > max_attempts)
          throw std::runtime_error("diffuse::diffusion::DpmAdaptive: image " + std::to_string(i) + " took " +
                                   std::to_string(max_attempts) + " attempts without reaching sigma_min (rtol " +
                                   std::to_string(rtol) + ", atol " + std::to_string(atol) + ")");
        if (!pid[i].propose(error, accept_safety)) {
          ++stats.rejected;
          continue;
        }
        prev.item(i) = low.item(i);
        x.item(i) = high.item(i);
        if (sigma_up[i] > 0.0) {
          noise.draw_item(i, z.item(0));
          x.item(i) = x.item(i) + static_cast<float>(s_noise * sigma_up[i]) * z.item(0);
        }
        s[i] = t_next[i];
        ++stats.accepted;
      }
    }
  }

  // sigma at t = s + r h
  static double sig_at(double s, double r, double h) { return std::exp(-(s + r * h)); }

  // eps = (x - D(x; sig_i)) / sig_i, each image at its own sigma.
  template <class D, class Batch>
  static void eps_at(D& denoise, TensorView<float, Batch> x, const std::vector<float>& sig, std::vector<float>& inv,
                     TensorView<float, Batch> den, TensorView<float, Batch> eps) {
    denoise(TensorView<const float, Batch>(x), std::span<const float>(sig), den);
    for (std::size_t i = 0; i < sig.size(); ++i) inv[i] = 1.0f / sig[i];
    eps = (x - den) * per_item<Batch>(std::span<const float>(inv));
  }
};

}  // namespace diffuse::diffusion
