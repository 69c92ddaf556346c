// The sigma schedules by name, for programs and users that choose one at run time (the
// companion of sampler_registry.hpp): a table of what each is and sigmas_by_name(name,
// steps, range), the n sigmas and the final 0 of that schedule.
//
//   const auto sigmas = diffusion::sigmas_by_name("exponential", 18, {.sigma_min = 0.01});
//   diffusion::with_sampler("dpmpp_2m", {}, [&](const auto& s) { s.run(denoise, x, sigmas, noise); });
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "diffuse/diffusion/named_table.hpp"
#include "diffuse/diffusion/schedule.hpp"

namespace diffuse::diffusion {

/// What a schedule is, for lists, help texts and docs/diffusion.md.
struct ScheduleInfo {
  std::string_view name;     ///< the registry's key (k-diffusion's get_sigmas_<name> where it has one)
  std::string_view summary;  ///< one line, with its source
  bool takes_range;          ///< ScheduleRange applies (ddpm's betas fix its range)
};

/// Every schedule of sigmas_by_name.
inline constexpr std::array<ScheduleInfo, 6> schedule_table{{
    {"karras", "EDM's schedule (Karras et al. 2022, eq. 5), rho 7, sigma 0.002 .. 80", true},
    {"exponential", "uniform in log sigma (k-diffusion's get_sigmas_exponential), 0.002 .. 80", true},
    {"ve", "EDM's VE discretisation (Table 1), geometric in sigma, 0.02 .. 100", true},
    {"vp", "EDM's VP discretisation (Table 1), linear-beta DDPM in continuous time", true},
    {"ddpm", "the 1000 discrete DDPM timesteps (Ho et al. 2020), linspace spacing", false},
    {"cosine", "EDM's iDDPM discretisation of the cosine schedule (Table 1), 0.002 .. 81", true},
}};

/// The entry called `name`, or nullptr.
inline const ScheduleInfo* find_schedule(std::string_view name) noexcept { return detail::find_by_name(schedule_table, name); }

/// The schedule names, comma-separated.
inline std::string schedule_list() { return detail::names_joined(schedule_table); }

/// The sigma range of a schedule chosen by name; 0 keeps the schedule's own bound.
struct ScheduleRange {
  double sigma_min = 0;  ///< last non-zero sigma (0: the schedule's own)
  double sigma_max = 0;  ///< first sigma (0: the schedule's own)
};

/// The `steps` sigmas of the schedule called `name`, descending, then 0 (steps + 1 numbers),
/// over `range`. For "vp" a range sets beta_d and beta_min so that the schedule runs from
/// sigma_max to sigma_min (VpSchedule::from_range, as EDM's generate.py does); for
/// "cosine" it selects the levels kept. Throws std::invalid_argument naming the known
/// schedules for an unknown name, and when a range is given to "ddpm", a bound is negative
/// or not finite, or the schedule cannot give `steps` levels (ddpm beyond its 1000
/// timesteps, cosine with fewer levels in the range).
inline std::vector<double> sigmas_by_name(std::string_view name, std::size_t steps, const ScheduleRange& range = {}) {
  const ScheduleInfo* info = find_schedule(name);
  if (!info) throw std::invalid_argument("unknown schedule '" + std::string(name) + "' (known: " + schedule_list() + ")");
  for (double b : {range.sigma_min, range.sigma_max})
    if (!(b >= 0) || !std::isfinite(b))
      throw std::invalid_argument("diffuse::diffusion::sigmas_by_name: sigma bounds are finite and >= 0, got " +
                                  std::to_string(b));
  const bool ranged = range.sigma_min > 0 || range.sigma_max > 0;
  if (ranged && !info->takes_range)
    throw std::invalid_argument("diffuse::diffusion::sigmas_by_name: the " + std::string(name) +
                                " schedule takes no sigma range (its betas fix it)");
  auto with_range = [&](auto s) {
    if (range.sigma_min > 0) s.sigma_min = range.sigma_min;
    if (range.sigma_max > 0) s.sigma_max = range.sigma_max;
    return s.sigmas(steps);
  };
  if (name == "karras") return with_range(KarrasSchedule{});
  if (name == "exponential") return with_range(ExponentialSchedule{});
  if (name == "ve") return with_range(VeSchedule{});
  if (name == "cosine") return with_range(CosineSchedule{});
  if (name == "ddpm") return DdpmSchedule{}.sigmas(steps);
  VpSchedule vp;  // "vp"
  if (ranged)
    vp = VpSchedule::from_range(range.sigma_min > 0 ? range.sigma_min : vp.sigma(vp.eps_s),
                                range.sigma_max > 0 ? range.sigma_max : vp.sigma(1.0));
  return vp.sigmas(steps);
}

}  // namespace diffuse::diffusion
