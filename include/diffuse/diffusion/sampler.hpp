// The samplers in one include: Euler, Heun (EDM Algorithm 2), EulerAncestral,
// DpmPp2M (DPM-Solver++(2M)), Dpm2 and Dpm2Ancestral (DPM-Solver-2), DpmPp2SAncestral
// (DPM-Solver++(2S) ancestral), Lms (linear multistep, order 4), Ipndm (fixed-weight
// Adams-Bashforth), the SDE samplers with Brownian noise DpmPpSde, DpmPp2MSde and
// DpmPp3MSde, and DpmAdaptive (DPM-Solver-23 with adaptive steps), each a template over
// its sigma schedule, and ddim() (Euler ancestral with DDIM's schedule and eta)
// (schedule.hpp), e.g.
//
//   diffusion::Heun<diffusion::KarrasSchedule> heun{.steps = 18};   // EDM's reference sampler
//   heun.sample(model, x.view(), /*seed=*/7);                     // model: Precond or any denoiser
//
// Contracts (denoiser, callback, noise, reproducibility) are in samplers/common.hpp.
#pragma once

#include "diffuse/diffusion/samplers/common.hpp"
#include "diffuse/diffusion/samplers/ddim.hpp"
#include "diffuse/diffusion/samplers/dpm_2.hpp"
#include "diffuse/diffusion/samplers/dpm_adaptive.hpp"
#include "diffuse/diffusion/samplers/dpmpp_2m.hpp"
#include "diffuse/diffusion/samplers/dpmpp_2s_ancestral.hpp"
#include "diffuse/diffusion/samplers/dpmpp_sde.hpp"
#include "diffuse/diffusion/samplers/euler.hpp"
#include "diffuse/diffusion/samplers/euler_ancestral.hpp"
#include "diffuse/diffusion/samplers/heun.hpp"
#include "diffuse/diffusion/samplers/ipndm.hpp"
#include "diffuse/diffusion/samplers/lms.hpp"
#include "diffuse/diffusion/schedule.hpp"
