// diffuse-sample: draws images from a trained EDM diffusion model (a checkpoint of
// diffuse-train, or a plain weights file with PyTorch names), or turns given images into
// new ones (img2img, SDEdit: noise them part of the way, then denoise), writing one PNG
// per image and a grid into the output folder.
//
//   diffuse-sample --checkpoint runs/fashion/checkpoint.safetensors --count 16 --out samples
//   diffuse-sample --checkpoint runs/fashion/model_ema.safetensors --init photos/ --strength 0.5
//   diffuse-sample --checkpoint runs/classes/checkpoint.safetensors --class 7 --guidance 2
//
// Image i of a run uses the noise of (seed, i), so the images do not depend on --batch.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <diffuse/diffusion/schedule.hpp>
#include <diffuse/io/data_error.hpp>
#include <diffuse/io/safetensors.hpp>
#include <diffuse/train/checkpoint_info.hpp>

#include "program.hpp"
#include "sample.hpp"

namespace {

using namespace diffuse;
using programs::SampleOptions;
using programs::UsageError;

constexpr const char* program = "diffuse-sample";

const std::vector<std::string> sampler_names = {"euler", "heun", "euler_ancestral", "dpmpp_2m", "ddim"};
const std::vector<std::string> schedule_names = {"karras", "exponential", "ve", "vp", "ddpm", "cosine"};

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

void check_options(const SampleOptions& o, const CLI::App& app) {
  auto known = [](const std::vector<std::string>& names, const std::string& v) {
    return std::find(names.begin(), names.end(), v) != names.end();
  };
  if (o.checkpoint.empty()) throw UsageError("--checkpoint is required (a training checkpoint or a weights file)");
  if (!known(sampler_names, o.sampler))
    throw UsageError("unknown sampler '" + o.sampler + "' (known: " + joined(sampler_names) + ")");
  if (!known(schedule_names, o.schedule))
    throw UsageError("unknown schedule '" + o.schedule + "' (known: " + joined(schedule_names) + ")");
  if (!known(programs::model_names, o.model))
    throw UsageError("unknown model '" + o.model + "' (known: " + joined(programs::model_names) + ")");
  if (app.count("--strength") && o.init.empty()) throw UsageError("--strength goes with --init (img2img)");
  if (app.count("--resize") && o.init.empty()) throw UsageError("--resize goes with --init (img2img)");
  if (app.count("--count") && !o.init.empty())
    throw UsageError("--count is for generation; with --init every input image is processed");
  if (o.sigma_min > 0 && o.sigma_max > 0 && !(o.sigma_min < o.sigma_max))
    throw UsageError("--sigma-min must be below --sigma-max");
  if (o.schedule == "ddpm" && static_cast<std::size_t>(o.steps) > diffusion::DdpmSchedule{}.timesteps)
    throw UsageError("--steps " + std::to_string(o.steps) + " is more than the " +
                     std::to_string(diffusion::DdpmSchedule{}.timesteps) + " timesteps of the ddpm schedule");
  if ((o.sigma_min > 0 || o.sigma_max > 0) && o.schedule == "ddpm")
    throw UsageError("--sigma-min/--sigma-max do not apply to the ddpm schedule (its betas fix its range)");
  if (app.count("--eta") && o.sampler != "euler_ancestral" && o.sampler != "ddim")
    throw UsageError("--eta applies to the samplers euler_ancestral and ddim, not " + o.sampler);
  if (app.count("--churn") && o.sampler != "euler" && o.sampler != "heun")
    throw UsageError("--churn applies to the samplers euler and heun, not " + o.sampler);
  if (app.count("--guidance") && !app.count("--class")) throw UsageError("--guidance goes with --class");
}

// The n sigmas of the chosen schedule, then 0.
std::vector<double> schedule_sigmas(const SampleOptions& o) {
  const auto n = static_cast<std::size_t>(o.steps);
  auto ranged = [&](auto s) {
    if (o.sigma_min > 0) s.sigma_min = o.sigma_min;
    if (o.sigma_max > 0) s.sigma_max = o.sigma_max;
    return s.sigmas(n);
  };
  if (o.schedule == "karras") return ranged(diffusion::KarrasSchedule{});
  if (o.schedule == "exponential") return ranged(diffusion::ExponentialSchedule{});
  if (o.schedule == "ve") return ranged(diffusion::VeSchedule{});
  if (o.schedule == "cosine") {  // n of its discrete levels within the range
    diffusion::CosineSchedule c;
    if (o.sigma_min > 0) c.sigma_min = o.sigma_min;
    if (o.sigma_max > 0) c.sigma_max = o.sigma_max;
    const std::size_t kept = c.levels_within_range();
    if (kept < n)
      throw UsageError("the cosine schedule has " + std::to_string(kept) + " of its " + std::to_string(c.M) +
                       " levels between sigma " + programs::number_text(c.sigma_min) + " and " + programs::number_text(c.sigma_max) +
                       " (--sigma-min, --sigma-max), fewer than --steps " + std::to_string(n));
    return c.sigmas(n);
  }
  if (o.schedule == "ddpm") return diffusion::DdpmSchedule{}.sigmas(n);
  diffusion::VpSchedule vp;  // "vp"
  if (o.sigma_min > 0 || o.sigma_max > 0)
    vp = diffusion::VpSchedule::from_range(o.sigma_min > 0 ? o.sigma_min : vp.sigma(vp.eps_s),
                                         o.sigma_max > 0 ? o.sigma_max : vp.sigma(1.0));
  return vp.sigmas(n);
}

// The schedule the options give must run downwards through finite sigmas. A bound given
// alone is checked against the schedule's own other bound this way, whichever it is.
void check_schedule(const SampleOptions& o, const std::vector<double>& sigmas) {
  const std::size_t n = sigmas.size() - 1;  // the last entry is the final 0
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(sigmas[i]) || !(sigmas[i] > 0))
      throw UsageError("the " + o.schedule + " schedule has sigma " + programs::number_text(sigmas[i]) +
                       " (--sigma-min and --sigma-max must give finite, positive sigmas)");
  if (sigmas[n - 1] > sigmas[0])
    throw UsageError("the " + o.schedule + " schedule would run upwards, from sigma " + programs::number_text(sigmas[0]) + " to " +
                     programs::number_text(sigmas[n - 1]) + ": --sigma-min must not be above --sigma-max (a bound not given is the "
                     "schedule's own)");
}

}  // namespace

int main(int argc, char** argv) {
  diffuse::programs::SampleOptions o;
  CLI::App app{"diffuse-sample: draws images from a trained EDM diffusion model, or reworks given ones (img2img)"};
  // A later occurrence of an option wins (cmake/setup.sh main passes defaults first).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--checkpoint", o.checkpoint,
                 "training checkpoint (checkpoint.safetensors) or weights file (model_ema.safetensors)");
  app.add_option("--model", o.model, "model configuration (" + joined(programs::model_names) + ")")
      ->capture_default_str();
  app.add_flag("--no-ema", o.no_ema, "use a training checkpoint's raw weights instead of their EMA");
  app.add_option("--out", o.out, "output folder (one PNG per image, grid.png)")->capture_default_str();
  app.add_option("--count", o.count, "images to generate")->check(programs::integer_in(1, 1'000'000))->capture_default_str();
  app.add_option("--batch", o.batch, "images per batch")->check(programs::integer_in(1, programs::max_batch))->capture_default_str();
  app.add_option("--sampler", o.sampler, "sampler (" + joined(sampler_names) + ")")->capture_default_str();
  app.add_option("--schedule", o.schedule, "sigma schedule (" + joined(schedule_names) + ")")->capture_default_str();
  app.add_option("--steps", o.steps, "sampling steps")->check(programs::integer_in(1, 100'000))->capture_default_str();
  app.add_option("--seed", o.seed, "random seed (image i uses the noise of (seed, i))")->capture_default_str();
  app.add_option("--sigma-min", o.sigma_min, "lowest sigma of the schedule (default: the schedule's own)")
      ->check(programs::real_in(0, programs::max_sigma, true));
  app.add_option("--sigma-max", o.sigma_max, "highest sigma of the schedule (default: the schedule's own)")
      ->check(programs::real_in(0, programs::max_sigma, true));
  app.add_option("--eta", o.eta, "noise of euler_ancestral (default 1) and ddim (default 0)")->check(programs::real_in(0, 100));
  app.add_option("--churn", o.churn, "EDM's S_churn for euler and heun (default 0: deterministic)")
      ->check(programs::real_in(0, 1e4));
  app.add_option("--class", o.label, "class to generate (a model trained with diffuse-train --labels)")
      ->check(programs::integer_in(0, 1'000'000));
  app.add_option("--guidance", o.guidance,
                 "with --class: classifier-free guidance scale (1: plain conditional, 0: unconditional)")
      ->check(programs::real_in(0, 1000))->capture_default_str();
  app.add_option("--init", o.init, "img2img: an image file, or a folder of images, to start from");
  app.add_option("--strength", o.strength, "img2img: how much to change, 0 (nothing) to 1 (all)")
      ->check(programs::real_in(0, 1))->capture_default_str();
  app.add_flag("--resize", o.resize, "img2img: resize images of another size (else they are rejected)");
  app.add_option("--threads", o.threads, "OpenMP threads (default: all cores)")
      ->check(programs::integer_in(1, programs::max_threads));
  std::string precision = "fp32";
  diffuse::programs::add_precision_option(app, precision);
  std::string device;
  diffuse::programs::add_device_option(app, device);
  app.set_version_flag("--version", diffuse::programs::info_line());
  bool info = false;
  app.add_flag("--info", info, "print version, instruction set, threads and device, then exit");
  if (const int code = diffuse::programs::parse_command_line(app, argc, argv, program); code >= 0) return code;
  if (o.threads > 0) diffuse::set_num_threads(o.threads);
  diffuse::programs::apply_precision(precision, program);
  if (!diffuse::programs::apply_device(device, program)) return 1;
  std::fprintf(stderr, "%s\n", diffuse::programs::info_line().c_str());
  if (info) {
    std::fprintf(stderr, "%s\n", diffuse::programs::bf16_line().c_str());
    return 0;
  }
  try {
    check_options(o, app);
    const std::vector<double> sigmas = schedule_sigmas(o);
    check_schedule(o, sigmas);
    const diffuse::train::CheckpointInfo saved = diffuse::train::read_checkpoint_info(o.checkpoint);
    if (saved.training_checkpoint && saved.model != o.model)
      throw diffuse::io::DataError(o.checkpoint, "checkpoint of model '" + saved.model + "', but --model is '" + o.model +
                                                     "' (pass --model " + saved.model + ")");
    if (!saved.training_checkpoint && o.no_ema)
      throw diffuse::io::DataError(o.checkpoint, "--no-ema applies to training checkpoints, but this file holds plain weights");
    const std::size_t classes = saved.classes;
    if (o.label >= 0 && classes == 0)
      throw UsageError("--class needs a class-conditional model, but " + o.checkpoint +
                       " was trained without labels (diffuse-train --labels)");
    if (o.label >= 0 && static_cast<std::size_t>(o.label) >= classes)
      throw UsageError("--class " + std::to_string(o.label) + " is not a class of the model (0.." +
                       std::to_string(classes - 1) + ")");
    if (classes != 0 && classes != diffuse::programs::label_classes)
      throw diffuse::io::DataError(o.checkpoint, "a model with " + std::to_string(classes) + " classes; the programs take " +
                                                     std::to_string(diffuse::programs::label_classes));
    return diffuse::programs::with_model(o.model, classes > 0,
                                         [&]<diffuse::nn::UNetConfig Cfg>() { return diffuse::programs::sample_model<Cfg>(o, sigmas); });
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    return 1;
  }
}
