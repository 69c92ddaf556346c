// diffuse-sample's options and its one entry point per model configuration. The main
// program (sample.cpp) parses and checks the command line; sample_run.hpp defines
// sample_model<Cfg>, which sample_<model>.cpp instantiates, one translation unit per
// configuration, so that the programs' heavy code compiles in parallel.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <diffuse/nn/unet_config.hpp>

#include "program.hpp"

namespace diffuse::programs {

/// The command line of diffuse-sample.
struct SampleOptions {
  std::string checkpoint;
  std::string model = "edm-mnist-small";
  std::string out = "samples";
  std::string sampler = "heun";
  std::string schedule = "karras";
  long long steps = 18;
  long long count = 16;
  long long batch = 16;
  std::uint64_t seed = 0;
  std::string init;
  double strength = 0.5;
  double sigma_min = 0;  // 0: the schedule's own
  double sigma_max = 0;
  double eta = -1;       // < 0: the sampler's own (1 for euler_ancestral, 0 for ddim)
  double churn = 0;
  int label = -1;        // --class; -1: none
  double guidance = default_guidance;
  int threads = 0;
  bool no_ema = false;
  bool resize = false;
};

/// Samples (or runs img2img) with configuration Cfg over `sigmas` (the schedule's, then
/// 0); returns the exit code (0, or 130 when interrupted). Throws UsageError for options
/// that make no sense with the inputs, and io errors naming the file.
template <nn::UNetConfig Cfg>
int sample_model(const SampleOptions& o, const std::vector<double>& sigmas);

}  // namespace diffuse::programs
