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
#include "sample_options.hpp"

namespace {

using namespace diffuse;
using programs::SampleOptions;
using programs::UsageError;

constexpr const char* program = "diffuse-sample";

}  // namespace

int main(int argc, char** argv) {
  diffuse::programs::SampleOptions o;
  CLI::App app{"diffuse-sample: draws images from a trained EDM diffusion model, or reworks given ones (img2img)"};
  programs::SampleCommandLine c;
  programs::add_sample_options(app, o, c);
  if (const int code = diffuse::programs::parse_command_line(app, argc, argv, program); code >= 0) return code;
  if (o.threads > 0) diffuse::set_num_threads(o.threads);
  diffuse::programs::apply_precision(c.precision, program);
  if (!diffuse::programs::apply_device(c.device, program)) return 1;
  std::fprintf(stderr, "%s\n", diffuse::programs::info_line().c_str());
  if (c.info) {
    std::fprintf(stderr, "%s\n", diffuse::programs::bf16_line().c_str());
    return 0;
  }
  try {
    const std::vector<double> sigmas = programs::checked_schedule(o, app);
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
