// diffuse-train: trains an EDM diffusion model on a folder of images or an IDX data set
// (MNIST, Fashion-MNIST), writing a progress line, a JSON-lines log, sample grids and
// checkpoints into the output folder. Ctrl-C saves a checkpoint; --resume goes on.
// With --labels it trains a class-conditional model for classifier-free guidance.
//
//   diffuse-train --data /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
//                 --model edm-mnist-small --minutes 5 --out runs/fashion
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>

#include <diffuse/io/data_error.hpp>
#include <diffuse/train/checkpoint_info.hpp>

#include "program.hpp"
#include "train.hpp"
#include "train_options.hpp"

int main(int argc, char** argv) {
  diffuse::programs::TrainOptions o;
  CLI::App app{"diffuse-train: trains an EDM diffusion model on images"};
  diffuse::programs::TrainCommandLine c;
  diffuse::programs::add_train_options(app, o, c);
  if (const int code = diffuse::programs::parse_command_line(app, argc, argv, "diffuse-train"); code >= 0) return code;
  if (o.threads > 0) diffuse::set_num_threads(o.threads);
  diffuse::programs::apply_precision(c.precision, "diffuse-train");
  if (!diffuse::programs::apply_device(c.device, "diffuse-train", false)) return 1;
  std::fprintf(stderr, "%s\n", diffuse::programs::info_line().c_str());
  if (c.info) {
    std::fprintf(stderr, "%s\n", diffuse::programs::bf16_line().c_str());
    return 0;
  }
  try {
    diffuse::programs::check_train_options(o, app);
    const std::string checkpoint = (std::filesystem::path(o.out) / "checkpoint.safetensors").string();
    if (o.resume && std::filesystem::exists(checkpoint)) {  // say how to resume a run with(out) labels
      const std::size_t classes = diffuse::train::read_checkpoint_info(checkpoint).classes;
      if (classes > 0 && o.labels.empty())
        throw diffuse::io::DataError(checkpoint, "the run was trained with labels (" + std::to_string(classes) +
                                                     " classes): pass --labels FILE to resume it");
      if (classes == 0 && !o.labels.empty())
        throw diffuse::io::DataError(checkpoint, "the run was trained without labels: resume it without --labels");
    }
    return diffuse::programs::with_model(o.model, !o.labels.empty(),
                                         [&]<diffuse::nn::UNetConfig Cfg>() { return diffuse::programs::train_model<Cfg>(o); });
  } catch (const diffuse::programs::UsageError& e) {
    std::fprintf(stderr, "diffuse-train: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "diffuse-train: error: %s\n", e.what());
    return 1;
  }
}
