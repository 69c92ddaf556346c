// DDIM (Song, Meng & Ermon 2021) in the variance-exploding view x = y + sigma n that the
// rest of the library uses: with the noise estimate eps = (x - D(x; sigma)) / sigma,
//   x_next = D + sigma_down eps + sigma_up z,  (sigma_down, sigma_up) = ancestral_step(sigma, sigma_next, eta).
// This is DDIM's update of x / sqrt(alpha_bar) with sigma^2 = (1 - alpha_bar) / alpha_bar,
// and, written x + (sigma_down - sigma) eps, Euler ancestral's update
// (samplers/euler_ancestral.hpp) with the same eta, equal up to rounding: DDIM is that
// sampler on DDPM's discrete schedule, with eta = 0 (deterministic; an Euler step, EDM
// section 3) by default. eta = 1 adds DDPM's ancestral noise.
#pragma once

#include <cstddef>

#include "diffuse/diffusion/samplers/euler_ancestral.hpp"

namespace diffuse::diffusion {

/// DDIM with `steps` steps and its eta (0: deterministic) on DDPM's schedule, or on
/// `schedule`: EulerAncestral with DDIM's defaults.
template <Schedule Sched = DdpmSchedule>
EulerAncestral<Sched> ddim(std::size_t steps = 50, double eta = 0.0, Sched schedule = {}) {
  return {.schedule = schedule, .steps = steps, .eta = eta};
}

}  // namespace diffuse::diffusion
