// The samplers by name, for programs and users that choose one at run time: a table of
// what each is (k-diffusion's name, order, denoiser calls per step, whether it draws
// noise, its names in diffusers and in the AUTOMATIC1111 web UI) and with_sampler(name,
// options, f), which calls f with the sampler of that name as its own type (so the
// sampling loop still compiles for each, with no virtual call per step). dpm_adaptive's
// run() returns its AdaptiveStats (the others return nothing), and it needs a denoiser
// that also takes one sigma per image.
//
//   diffusion::with_sampler("dpm_2", {.steps = 18}, [&](const auto& s) {
//     s.run(denoise, x.view(), sigmas, noise, callback);
//   });
#pragma once

#include <array>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

#include "diffuse/diffusion/named_table.hpp"
#include "diffuse/diffusion/sampler.hpp"

namespace diffuse::diffusion {

/// What a sampler is, for lists, help texts and docs/diffusion.md.
struct SamplerInfo {
  std::string_view name;       ///< k-diffusion's name (sample_<name>), the registry's key
  std::string_view summary;    ///< one line
  int order;                   ///< order of the deterministic method
  std::string_view calls;      ///< denoiser calls per step ("1", "2", "2 (1 on the last)")
  bool stochastic;             ///< draws noise (with its default eta / churn)
  std::string_view diffusers;  ///< the diffusers scheduler, or "-"
  std::string_view a1111;      ///< the AUTOMATIC1111 web UI name, or "-"
  bool takes_eta;              ///< SamplerOptions::eta applies
  bool takes_churn;            ///< SamplerOptions::churn applies
  bool adaptive = false;       ///< chooses its own steps (SamplerOptions::rtol, atol; steps unused)
};

/// Every sampler of with_sampler, in the order of docs/diffusion.md. The SDE samplers
/// (dpmpp_sde, dpmpp_*_sde) draw Brownian noise (brownian.hpp).
inline constexpr std::array<SamplerInfo, 15> sampler_table{{
    {"euler", "Euler, EDM's first-order ODE step (with optional churn)", 1, "1", false,
     "EulerDiscreteScheduler", "Euler", false, true},
    {"euler_ancestral", "Euler with ancestral noise (eta 1)", 1, "1", true, "EulerAncestralDiscreteScheduler",
     "Euler a", true, false},
    {"heun", "EDM's Heun sampler (Algorithm 2; churn optional)", 2, "2 (1 on the last)", false,
     "HeunDiscreteScheduler", "Heun", false, true},
    {"dpm_2", "DPM-Solver-2: a midpoint step in log sigma (churn optional)", 2, "2 (1 on the last)", false,
     "KDPM2DiscreteScheduler", "DPM2", false, true},
    {"dpm_2_ancestral", "DPM-Solver-2 with ancestral noise", 2, "2 (1 on the last)", true,
     "KDPM2AncestralDiscreteScheduler", "DPM2 a", true, false},
    {"lms", "linear multistep (Adams-Bashforth) of order 4", 4, "1", false, "LMSDiscreteScheduler", "LMS", false,
     false},
    {"ipndm", "iPNDM: Adams-Bashforth with the fixed weights of equal steps (order 2 on uneven sigmas)", 2, "1", false,
     "-",
     "-", false, false},
    {"dpmpp_2s_ancestral", "DPM-Solver++(2S) with ancestral noise", 2, "2 (1 on the last)", true, "-",
     "DPM++ 2S a", true, false},
    {"dpmpp_sde", "DPM-Solver++ SDE: a midpoint substep, Brownian noise", 2, "2 (1 on the last)", true,
     "DPMSolverSDEScheduler", "DPM++ SDE", true, false},
    {"dpmpp_2m", "DPM-Solver++(2M), second-order multistep", 2, "1", false, "DPMSolverMultistepScheduler",
     "DPM++ 2M", false, false},
    {"dpmpp_2m_sde", "DPM-Solver++(2M) SDE (midpoint), Brownian noise", 2, "1", true,
     "DPMSolverMultistepScheduler(algorithm_type=\"sde-dpmsolver++\")", "DPM++ 2M SDE", true, false},
    {"dpmpp_2m_sde_heun", "DPM-Solver++(2M) SDE, k-diffusion's solver_type heun", 2, "1", true, "-",
     "DPM++ 2M SDE Heun", true, false},
    {"dpmpp_3m_sde", "DPM-Solver++(3M) SDE, third-order multistep, Brownian noise", 3, "1", true, "-",
     "DPM++ 3M SDE", true, false},
    {"ddim", "DDIM (eta 0: deterministic); Euler ancestral with DDIM's eta", 1, "1", false, "DDIMScheduler",
     "DDIM", true, false},
    {"dpm_adaptive", "DPM-Solver-23 with adaptive steps per image (--rtol, --atol; reports its NFE)", 3,
     "3 per attempt, adaptive", false, "-", "DPM adaptive", true, false, true},
}};

/// The entry called `name`, or nullptr.
inline const SamplerInfo* find_sampler(std::string_view name) noexcept { return detail::find_by_name(sampler_table, name); }

/// The sampler names, comma-separated.
inline std::string sampler_list() { return detail::names_joined(sampler_table); }

/// The settings a sampler chosen by name takes (those that do not apply are ignored).
struct SamplerOptions {
  std::size_t steps = 18;  ///< steps of the schedule
  double eta = -1;         ///< ancestral noise; < 0: the sampler's own (1, DDIM's 0)
  double churn = 0;        ///< EDM's S_churn (euler, heun, dpm_2)
  double rtol = 0.05;      ///< dpm_adaptive's relative tolerance (k-diffusion's default)
  double atol = 0.0078;    ///< dpm_adaptive's absolute tolerance (k-diffusion's default)
};

/// Calls f(sampler) with the sampler called `name` over schedule Sched (each a different
/// type), configured by `o`, and returns what f returns. Throws std::invalid_argument
/// naming the known samplers when there is none of that name.
template <Schedule Sched = KarrasSchedule, class F>
decltype(auto) with_sampler(std::string_view name, const SamplerOptions& o, F&& f) {
  const std::size_t n = o.steps;
  const double eta = o.eta >= 0 ? o.eta : name == "ddim" || name == "dpm_adaptive" ? 0.0 : 1.0;
  if (name == "euler") return f(Euler<Sched>{.steps = n, .s_churn = o.churn});
  if (name == "heun") return f(Heun<Sched>{.steps = n, .s_churn = o.churn});
  if (name == "dpm_2") return f(Dpm2<Sched>{.steps = n, .s_churn = o.churn});
  if (name == "dpm_2_ancestral") return f(Dpm2Ancestral<Sched>{.steps = n, .eta = eta});
  if (name == "lms") return f(Lms<Sched>{.steps = n});
  if (name == "ipndm") return f(Ipndm<Sched>{.steps = n});
  if (name == "dpmpp_2s_ancestral") return f(DpmPp2SAncestral<Sched>{.steps = n, .eta = eta});
  if (name == "dpmpp_2m") return f(DpmPp2M<Sched>{.steps = n});
  if (name == "dpmpp_sde") return f(DpmPpSde<Sched>{.steps = n, .eta = eta});
  if (name == "dpmpp_2m_sde") return f(DpmPp2MSde<Sched>{.steps = n, .eta = eta});
  if (name == "dpmpp_2m_sde_heun") return f(DpmPp2MSde<Sched>{.steps = n, .eta = eta, .heun = true});
  if (name == "dpmpp_3m_sde") return f(DpmPp3MSde<Sched>{.steps = n, .eta = eta});
  if (name == "euler_ancestral" || name == "ddim") return f(EulerAncestral<Sched>{.steps = n, .eta = eta});
  if (name == "dpm_adaptive") return f(DpmAdaptive<Sched>{.steps = n, .rtol = o.rtol, .atol = o.atol, .eta = eta});
  throw std::invalid_argument("unknown sampler '" + std::string(name) + "' (known: " + sampler_list() + ")");
}

}  // namespace diffuse::diffusion
