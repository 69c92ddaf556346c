// diffuse-sample's command line on CLI11: its options, and the checks they pass before
// any file is read (shared by the program and the fuzz target tests/fuzz/fuzz_options.cpp).
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "diffuse/programs/cli.hpp"
#include "diffuse/programs/common.hpp"
#include "diffuse/programs/sample_options.hpp"

namespace diffuse::programs {

/// The checks of the options among themselves (UsageError), before any file is read.
inline void check_options(const SampleOptions& o, const CLI::App& app,
                          const std::vector<std::string>& models = model_names) {
  auto known = [](const std::vector<std::string>& names, const std::string& v) {
    return std::find(names.begin(), names.end(), v) != names.end();
  };
  if (o.checkpoint.empty()) throw UsageError("--checkpoint is required (a training checkpoint or a weights file)");
  if (!diffusion::find_sampler(o.sampler))
    throw UsageError("unknown sampler '" + o.sampler + "' (known: " + diffusion::sampler_list() + ")");
  if (!diffusion::find_schedule(o.schedule))
    throw UsageError("unknown schedule '" + o.schedule + "' (known: " + diffusion::schedule_list() + ")");
  if (!o.model.empty() && !known(models, o.model))
    throw UsageError("unknown model '" + o.model + "' (known: " + joined(models) + ")");
  if (app.count("--strength") && o.init.empty()) throw UsageError("--strength goes with --init (img2img)");
  if (app.count("--resize") && o.init.empty()) throw UsageError("--resize goes with --init (img2img)");
  if (!o.mask.empty() && o.init.empty()) throw UsageError("--mask goes with --init (inpainting: the images to complete)");
  if (app.count("--count") && !o.init.empty())
    throw UsageError("--count is for generation; with --init every input image is processed");
  if (o.sigma_min > 0 && o.sigma_max > 0 && !(o.sigma_min < o.sigma_max))
    throw UsageError("--sigma-min must be below --sigma-max");
  if (o.schedule == "ddpm" && static_cast<std::size_t>(o.steps) > diffuse::diffusion::DdpmSchedule{}.timesteps)
    throw UsageError("--steps " + std::to_string(o.steps) + " is more than the " +
                     std::to_string(diffuse::diffusion::DdpmSchedule{}.timesteps) + " timesteps of the ddpm schedule");
  if ((o.sigma_min > 0 || o.sigma_max > 0) && o.schedule == "ddpm")
    throw UsageError("--sigma-min/--sigma-max do not apply to the ddpm schedule (its betas fix its range)");
  auto taking = [](bool diffusion::SamplerInfo::*takes) {
    std::string s;
    for (const auto& e : diffusion::sampler_table)
      if (e.*takes) s += (s.empty() ? "" : ", ") + std::string(e.name);
    return s;
  };
  const diffusion::SamplerInfo* info = diffusion::find_sampler(o.sampler);
  if (app.count("--eta") && !info->takes_eta)
    throw UsageError("--eta applies to the samplers " + taking(&diffusion::SamplerInfo::takes_eta) + ", not " + o.sampler);
  if (app.count("--churn") && !info->takes_churn)
    throw UsageError("--churn applies to the samplers " + taking(&diffusion::SamplerInfo::takes_churn) + ", not " +
                     o.sampler);
  if (info->adaptive && o.steps < 2)
    throw UsageError("--steps " + std::to_string(o.steps) + ": " + o.sampler +
                     " takes its range from the schedule's sigmas, which need --steps 2 or more");
  for (const char* tol : {"--rtol", "--atol"})
    if (app.count(tol) && !info->adaptive)
      throw UsageError(std::string(tol) + " applies to the samplers " + taking(&diffusion::SamplerInfo::adaptive) +
                       ", not " + o.sampler);
  if (app.count("--guidance") && !app.count("--class")) throw UsageError("--guidance goes with --class");
}

/// Declares every option of diffuse-sample on `app`, storing into `o` and `c`.
inline void add_sample_options(CLI::App& app, SampleOptions& o, SampleCommandLine& c,
                               const std::vector<std::string>& models = model_names) {
  // A later occurrence of an option wins (cmake/setup.sh main passes defaults first).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--checkpoint", o.checkpoint,
                 "training checkpoint (checkpoint.safetensors) or weights file (model_ema.safetensors)");
  app.add_option("--model", o.model,
                 "model configuration (" + joined(models) + "); default: the one the checkpoint names");
  app.add_flag("--no-ema", o.no_ema, "use a training checkpoint's raw weights instead of their EMA");
  app.add_option("--out", o.out, "output folder (one PNG per image, grid.png)")->capture_default_str();
  app.add_option("--count", o.count, "images to generate")->check(integer_in(1, 1'000'000))->capture_default_str();
  app.add_option("--batch", o.batch, "images per batch")->check(integer_in(1, max_batch))->capture_default_str();
  std::string samplers = "sampler, by k-diffusion's name:";
  for (const auto& e : diffusion::sampler_table)
    samplers += "\n  " + std::string(e.name) + ": " + std::string(e.summary);
  app.add_option("--sampler", o.sampler, samplers)->capture_default_str();
  std::string schedules = "sigma schedule:";
  for (const auto& e : diffusion::schedule_table)
    schedules += "\n  " + std::string(e.name) + ": " + std::string(e.summary);
  app.add_option("--schedule", o.schedule, schedules)->capture_default_str();
  app.add_option("--steps", o.steps, "sampling steps")->check(integer_in(1, 100'000))->capture_default_str();
  app.add_option("--seed", o.seed, "random seed (image i uses the noise of (seed, i))")->capture_default_str();
  app.add_option("--sigma-min", o.sigma_min, "lowest sigma of the schedule (default: the schedule's own)")
      ->check(real_in(0, max_sigma, true));
  app.add_option("--sigma-max", o.sigma_max, "highest sigma of the schedule (default: the schedule's own)")
      ->check(real_in(0, max_sigma, true));
  app.add_option("--eta", o.eta, "noise of euler_ancestral, dpm_2_ancestral, dpmpp_2s_ancestral, the SDE samplers (default 1), ddim and dpm_adaptive (default 0)")->check(real_in(0, 100));
  app.add_option("--churn", o.churn, "EDM's S_churn for euler, heun and dpm_2 (default 0: deterministic)")
      ->check(real_in(0, 1e4));
  app.add_option("--rtol", o.rtol, "dpm_adaptive: relative error tolerance per step (smaller: more steps)")
      ->check(real_in(0, 10, true))->capture_default_str();
  app.add_option("--atol", o.atol, "dpm_adaptive: absolute error tolerance per step, in pixel units of [-1, 1]")
      ->check(real_in(0, 10, true))->capture_default_str();
  app.add_option("--class", o.label, "class to generate (a model trained with diffuse-train --labels)")
      ->check(integer_in(0, 1'000'000));
  app.add_option("--guidance", o.guidance,
                 "with --class: classifier-free guidance scale (1: plain conditional, 0: unconditional)")
      ->check(real_in(0, 1000))->capture_default_str();
  app.add_option("--init", o.init, "img2img: an image file, or a folder of images, to start from");
  app.add_option("--strength", o.strength, "img2img: how much to change, 0 (nothing) to 1 (all); with --mask "
                                           "the default is 1")
      ->check(real_in(0, 1))->capture_default_str();
  app.add_option("--mask", o.mask, "inpainting, with --init: an image whose white pixels are regenerated and whose "
                                   "black ones are kept (grey blends)");
  app.add_flag("--resize", o.resize, "img2img: resize images of another size (else they are rejected)");
  app.add_option("--threads", o.threads, "OpenMP threads (default: all cores)")
      ->check(integer_in(1, max_threads));
  add_precision_option(app, c.precision);
  add_device_option(app, c.device);
  app.set_version_flag("--version", info_line());
  app.add_flag("--info", c.info, "print version, instruction set, threads and device, then exit");
}

/// check_options, then the schedule's sigmas, checked: what the options give before any
/// file is read. Throws UsageError.
inline std::vector<double> checked_schedule(const SampleOptions& o, const CLI::App& app,
                                            const std::vector<std::string>& models = model_names) {
  check_options(o, app, models);
  std::vector<double> sigmas = schedule_sigmas(o);
  check_schedule(o, sigmas);
  return sigmas;
}

}  // namespace diffuse::programs
