// diffuse-train's options and its one entry point per model configuration. The main
// program (train.cpp) parses the command line; train_run.hpp defines train_model<Cfg>,
// which train_<model>.cpp instantiates, one translation unit per configuration, so that
// the programs' heavy code compiles in parallel.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include <diffuse/nn/unet_config.hpp>

namespace diffuse::programs {

/// The command line of diffuse-train.
struct TrainOptions {
  std::string data = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
  std::string labels;
  std::string model = "edm-mnist-small";
  std::string out = "out";
  std::size_t batch = 128;
  double lr = 1e-3;
  std::uint64_t warmup = 100;
  std::uint64_t steps = 0;   // 0: no limit
  double epochs = 0;         // 0: no limit
  double minutes = 0;        // 0: no limit
  int threads = 0;           // 0: OpenMP's default
  std::uint64_t seed = 0;
  double ema_half_life = 0.5;  // millions of images (EDM: 0.5)
  double label_dropout = 0.1;
  std::set<std::string> given;  // options on the command line ("--lr"); a resumed run keeps the others
  std::uint64_t sample_every = 500;
  std::uint64_t checkpoint_every = 1000;
  std::uint64_t log_every = 10;
  std::size_t sample_count = 16;
  bool resume = false;
  bool resize = false;
};

/// Trains configuration Cfg as the options say; returns the exit code (0, or 130 when
/// interrupted). Throws on bad data or a bad checkpoint (the message names the file).
template <nn::UNetConfig Cfg>
int train_model(const TrainOptions& o);

}  // namespace diffuse::programs
