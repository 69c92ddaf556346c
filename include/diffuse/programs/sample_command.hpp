// diffuse-sample's command: parse and check the command line, find the configuration the
// checkpoint holds in the table of configurations, run it. Light (no network code): the runs come as
// function pointers, compiled elsewhere (sample_main.hpp).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "diffuse/io/data_error.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/programs/cli.hpp"
#include "diffuse/programs/common.hpp"
#include "diffuse/programs/models.hpp"
#include "diffuse/programs/sample_cli.hpp"
#include "diffuse/programs/sample_options.hpp"
#include "diffuse/train/checkpoint_info.hpp"

namespace diffuse::programs {

/// A sampling run over `sigmas` (the schedule's, then 0): returns the exit code (0, or
/// 130 when interrupted); throws UsageError for options that make no sense with the
/// inputs, io errors naming the file.
using SampleRun = int (*)(const SampleOptions&, const std::vector<double>&);

/// Whether the weights in a file have the names and shapes of one configuration (classes
/// as given); used when the file does not name its model.
using WeightsFit = bool (*)(const io::SafetensorsFile&, std::size_t classes);

/// An entry of diffuse-sample's table: the runs, and the test of a file's shapes.
struct SampleEntry : ModelEntry<SampleRun> {
  WeightsFit fits = nullptr;  ///< null: never chosen by shape
};

namespace detail {

// The configuration to sample with: --model, else the name the file carries (training
// checkpoints; weights written by diffuse), else the one configuration whose shapes the
// weights have. Says on stderr how it chose when the file did not name it.
inline const SampleEntry& model_for(const std::vector<SampleEntry>& models, const SampleOptions& o,
                                    const train::CheckpointInfo& saved) {
  auto named = [&](const std::string& name) -> const SampleEntry& {
    for (const auto& e : models)
      if (e.name == name) return e;
    throw io::DataError(o.checkpoint, "holds model '" + name + "', which this program does not have (it has: " +
                                          joined(names_of(models)) + ")");
  };
  if (!o.model.empty()) {
    if (!saved.model.empty() && saved.model != o.model)
      throw io::DataError(o.checkpoint, "holds model '" + saved.model + "', but --model is '" + o.model +
                                            "' (leave --model out: the file names its model)");
    return named(o.model);
  }
  if (!saved.model.empty()) return named(saved.model);
  const io::SafetensorsFile file(o.checkpoint);
  const SampleEntry* found = nullptr;
  for (const auto& e : models)
    if (e.fits && e.fits(file, saved.classes)) {
      found = &e;
      break;
    }
  if (!found) {
    throw io::DataError(o.checkpoint, "the file does not name its model and its weights fit none of " +
                                          joined(names_of(models)) +
                                          " (pass --model to see which tensor differs)");
  }
  std::fprintf(stderr, "model %s: the configuration whose shapes the weights have (--model chooses another)\n",
               found->name.c_str());
  return *found;
}

}  // namespace detail

/// diffuse-sample's main over the configurations of `models`: returns the exit status
/// (0 done, 1 bad file, 2 bad command line, 130 interrupted).
inline int sample_command(int argc, char** argv, const std::vector<SampleEntry>& models,
                          const char* program = "diffuse-sample") {
  SampleOptions o;
  CLI::App app{std::string(program) +
               ": draws images from a trained EDM diffusion model, or reworks given ones (img2img)"};
  SampleCommandLine c;
  const std::vector<std::string> names = names_of(models);
  add_sample_options(app, o, c, names);
  if (const int code = parse_command_line(app, argc, argv, program); code >= 0) return code;
  if (const int code = start_program(program, o.threads, c.precision, c.device, c.info); code >= 0) return code;
  return run_reporting_errors(program, [&] {
    const std::vector<double> sigmas = checked_schedule(o, app, names);
    const train::CheckpointInfo saved = train::read_checkpoint_info(o.checkpoint);
    if (!saved.training_checkpoint && o.no_ema)
      throw io::DataError(o.checkpoint, "--no-ema applies to training checkpoints, but this file holds plain weights");
    const SampleEntry& entry = detail::model_for(models, o, saved);
    const std::size_t classes = saved.classes;
    if (o.label >= 0 && classes == 0)
      throw UsageError("--class needs a class-conditional model, but " + o.checkpoint +
                       " was trained without labels (diffuse-train --labels or --class-folders)");
    if (o.label >= 0 && static_cast<std::size_t>(o.label) >= classes)
      throw UsageError("--class " + std::to_string(o.label) + " is not a class of the model (0.." +
                       std::to_string(classes - 1) + ")");
    if (classes != 0 && classes != entry.classes)
      throw io::DataError(o.checkpoint, "a model with " + std::to_string(classes) + " classes; this program's '" +
                                            entry.name + "' takes " + std::to_string(entry.classes));
    SampleOptions run = o;
    run.model = entry.name;
    if (!o.mask.empty() && !app.count("--strength")) run.strength = 1.0;  // inpainting regenerates fully
    return entry.run(classes > 0)(run, sigmas);
  });
}

}  // namespace diffuse::programs
