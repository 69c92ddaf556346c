// diffuse-sample's settings: what its command line sets (sample_cli.hpp declares the
// options and checks them) and the schedule they give. sample_run.hpp defines
// sample_model<Cfg>, the run for one configuration.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "diffuse/diffusion/sampler_registry.hpp"
#include "diffuse/diffusion/schedule_registry.hpp"
#include "diffuse/nn/unet_config.hpp"

#include "diffuse/programs/common.hpp"

namespace diffuse::programs {

/// The command line of diffuse-sample.
struct SampleOptions {
  std::string checkpoint;  ///< --checkpoint
  std::string model;  ///< --model (empty: the one the checkpoint names)
  std::string out = "samples";  ///< --out
  std::string sampler = "heun";  ///< --sampler
  std::string schedule = "karras";  ///< --schedule
  long long steps = 18;  ///< --steps
  long long count = 16;  ///< --count
  long long batch = 16;  ///< --batch
  std::uint64_t seed = 0;  ///< --seed
  std::string init;  ///< --init
  std::string mask;  ///< --mask (inpainting: white regenerated, black kept)
  double strength = 0.5;  ///< --strength
  double sigma_min = 0;  ///< --sigma-min (0: the schedule's own)
  double sigma_max = 0;  ///< --sigma-max (0: the schedule's own)
  double eta = -1;  ///< --eta (< 0: the sampler's own: 1 for euler_ancestral, 0 for ddim)
  double churn = 0;  ///< --churn
  double rtol = 0.05;  ///< --rtol (dpm_adaptive)
  double atol = 0.0078;  ///< --atol (dpm_adaptive)
  int label = -1;  ///< --class (-1: none)
  double guidance = default_guidance;  ///< --guidance
  int threads = 0;  ///< --threads
  bool no_ema = false;  ///< --no-ema
  bool resize = false;  ///< --resize
};

/// The options of diffuse-sample that are not SampleOptions.
struct SampleCommandLine {
  std::string precision = "fp32";  ///< --precision
  std::string device;              ///< --device (its default from DIFFUSE_DEVICE)
  bool info = false;               ///< --info
};

/// The n sigmas of the chosen schedule, then 0 (diffusion::sigmas_by_name; UsageError
/// when the range leaves too few levels).
inline std::vector<double> schedule_sigmas(const SampleOptions& o) {
  const auto n = static_cast<std::size_t>(o.steps);
  if (o.schedule == "cosine") {  // n of its discrete levels within the range: say which options
    diffusion::CosineSchedule c;
    if (o.sigma_min > 0) c.sigma_min = o.sigma_min;
    if (o.sigma_max > 0) c.sigma_max = o.sigma_max;
    const std::size_t kept = c.levels_within_range();
    if (kept < n)
      throw UsageError("the cosine schedule has " + std::to_string(kept) + " of its " + std::to_string(c.M) +
                       " levels between sigma " + number_text(c.sigma_min) + " and " + number_text(c.sigma_max) +
                       " (--sigma-min, --sigma-max), fewer than --steps " + std::to_string(n));
  }
  return diffusion::sigmas_by_name(o.schedule, n, {.sigma_min = o.sigma_min, .sigma_max = o.sigma_max});
}

// The schedule the options give must run downwards through finite sigmas. A bound given
// alone is checked against the schedule's own other bound this way, whichever it is.
inline void check_schedule(const SampleOptions& o, const std::vector<double>& sigmas) {
  const std::size_t n = sigmas.size() - 1;  // the last entry is the final 0
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(sigmas[i]) || !(sigmas[i] > 0))
      throw UsageError("the " + o.schedule + " schedule has sigma " + number_text(sigmas[i]) +
                       " (--sigma-min and --sigma-max must give finite, positive sigmas)");
  if (sigmas[n - 1] > sigmas[0])
    throw UsageError("the " + o.schedule + " schedule would run upwards, from sigma " + number_text(sigmas[0]) + " to " +
                     number_text(sigmas[n - 1]) + ": --sigma-min must not be above --sigma-max (a bound not given is the "
                     "schedule's own)");
}

}  // namespace diffuse::programs
