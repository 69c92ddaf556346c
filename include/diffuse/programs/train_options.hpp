// diffuse-train's settings: what its command line sets (train_cli.hpp declares the options
// and checks them), and the type of a configuration's run. train_run.hpp defines
// train_model<Cfg>, the run for one configuration.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "diffuse/nn/unet_config.hpp"
#include "diffuse/train/communicator.hpp"

#include "diffuse/programs/common.hpp"
#include "diffuse/programs/models.hpp"

namespace diffuse::programs {

/// The distance --eval-every logs: f(images, n) for n images (N, H, W, C) of the run's
/// shape, pixels in [-1, 1].
using FrechetFunction = std::function<double(const float* images, std::size_t n)>;
/// Makes the FrechetFunction for images (h, w, c) from a classifier file and reference
/// images, and says how many reference images it read; throws (naming the file) on bad
/// files or a shape it has no classifier for. programs/frechet_eval.hpp defines them: kept
/// out of the configurations' units, whose compile time it would double.
using FrechetFactory = FrechetFunction (*)(std::size_t h, std::size_t w, std::size_t c, const std::string& classifier,
                                           const std::string& reference, std::size_t& reference_count);

/// The command line of diffuse-train.
struct TrainOptions {
  std::string data = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";  ///< --data
  std::string labels;                   ///< --labels (IDX label file)
  std::string model = "edm-mnist-small";  ///< --model
  std::string out = "out";              ///< --out
  std::size_t batch = 128;              ///< --batch
  double lr = 1e-3;                     ///< --lr
  std::uint64_t warmup = 100;           ///< --warmup (steps)
  std::uint64_t steps = 0;              ///< --steps (0: no limit)
  double epochs = 0;                    ///< --epochs (0: no limit)
  double minutes = 0;                   ///< --minutes (0: no limit)
  int threads = 0;                      ///< --threads (0: OpenMP's default)
  std::uint64_t seed = 0;               ///< --seed
  double ema_half_life = 0.5;           ///< --ema-half-life, millions of images (EDM: 0.5)
  double ema_rampup = 0.05;             ///< --ema-rampup: EDM's ema_rampup_ratio (0: none)
  double label_dropout = 0.1;           ///< --label-dropout
  std::set<std::string> given;  ///< options on the command line ("--lr"); a resumed run keeps the others
  std::uint64_t sample_every = 500;     ///< --sample-every (0: only at the end)
  std::uint64_t checkpoint_every = 1000;  ///< --checkpoint-every (0: only at the end)
  std::uint64_t ema_snapshot_every = 1000;  ///< --ema-snapshot-every (0: only at the end)
  std::uint64_t eval_every = 0;         ///< --eval-every: Fréchet distance every N steps (0: never)
  std::string eval_classifier;          ///< --eval-classifier (diffuse-eval classifier's file)
  std::string eval_reference;           ///< --eval-reference: real images (IDX or folder)
  std::size_t eval_count = 1000;        ///< --eval-count: images generated per evaluation
  FrechetFactory frechet = nullptr;     ///< (not an option) what --eval-every uses, set by the program
  /// (Not an option) the processes of a data-parallel run under mpirun, set by the program;
  /// null: this process alone.
  train::Communicator* communicator = nullptr;
  std::uint64_t log_every = 10;         ///< --log-every
  std::size_t sample_count = 16;        ///< images in a sample grid
  bool resume = false;                  ///< --resume
  bool resize = false;                  ///< --resize
  bool crop = false;           ///< --crop: centre square of non-square images (then resized)
  bool class_folders = false;  ///< --class-folders: data/CLASS/*.png, the sub-folder is the label
  bool xflip = false;          ///< --xflip: each image shown mirrored half of the time (EDM's --xflip)
  std::string alpha = "white";  ///< --alpha: what transparent pixels become (white, black, error)

  /// Class-conditional training: labels from an IDX file or from class folders.
  bool conditional() const { return !labels.empty() || class_folders; }
};


/// The options of diffuse-train that are not TrainOptions.
struct TrainCommandLine {
  std::string precision = "fp32";  ///< --precision
  std::string device;              ///< --device (its default from DIFFUSE_DEVICE)
  bool info = false;               ///< --info
};

/// A training run: trains as the options say; returns the exit code (0, or 130 when
/// interrupted); throws on bad data or a bad checkpoint (the message names the file).
using TrainRun = int (*)(const TrainOptions&);

/// An entry of diffuse-train's table.
using TrainEntry = ModelEntry<TrainRun>;

}  // namespace diffuse::programs
