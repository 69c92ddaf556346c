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

int main(int argc, char** argv) {
  diffuse::programs::TrainOptions o;
  CLI::App app{"diffuse-train: trains an EDM diffusion model on images"};
  // A later occurrence of an option wins (cmake/setup.sh main passes defaults first).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--data", o.data, "IDX image file (plain or .gz) or folder of images")->capture_default_str();
  app.add_option("--labels", o.labels, "IDX label file: train a class-conditional model (classes 0-9)");
  app.add_option("--label-dropout", o.label_dropout,
                 "with --labels: fraction of images shown without their label (for guidance)")
      ->check(diffuse::programs::real_in(0, 1))->capture_default_str();
  app.add_option("--model", o.model, "model configuration")
      ->check(CLI::IsMember(diffuse::programs::model_names))->capture_default_str();
  app.add_option("--out", o.out, "output folder (checkpoint, log, samples)")->capture_default_str();
  app.add_option("--batch", o.batch, "images per step")->check(diffuse::programs::integer_in(1, diffuse::programs::max_batch))->capture_default_str();
  app.add_option("--lr", o.lr, "learning rate (AdamW)")->check(diffuse::programs::real_in(0, 10, true))->capture_default_str();
  app.add_option("--warmup", o.warmup, "steps of linear learning-rate warm-up")
      ->check(diffuse::programs::integer_in(0, diffuse::programs::max_steps))->capture_default_str();
  auto* steps = app.add_option("--steps", o.steps, "stop after this many steps in all")
                    ->check(diffuse::programs::integer_in(1, diffuse::programs::max_steps));
  auto* epochs = app.add_option("--epochs", o.epochs, "stop after this many passes over the data")
                     ->check(diffuse::programs::real_in(0, 1e6, true));
  app.add_option("--minutes", o.minutes, "stop after this much time")->check(diffuse::programs::real_in(0, 1e7, true));
  app.add_option("--threads", o.threads, "OpenMP threads (default: all cores)")
      ->check(diffuse::programs::integer_in(1, diffuse::programs::max_threads));
  app.add_option("--seed", o.seed, "random seed (weights, shuffling, noise)")->capture_default_str();
  app.add_option("--ema-half-life", o.ema_half_life, "EMA half-life in millions of images")
      ->check(diffuse::programs::real_in(0, 1e6, true))->capture_default_str();
  app.add_option("--sample-every", o.sample_every, "write a sample grid every N steps (0: only at the end)")
      ->check(diffuse::programs::integer_in(0, diffuse::programs::max_steps))->capture_default_str();
  app.add_option("--checkpoint-every", o.checkpoint_every, "save a checkpoint every N steps (0: only at the end)")
      ->check(diffuse::programs::integer_in(0, diffuse::programs::max_steps))->capture_default_str();
  app.add_option("--log-every", o.log_every, "progress line every N steps when not on a terminal")
      ->check(diffuse::programs::integer_in(1, diffuse::programs::max_steps))->capture_default_str();
  app.add_flag("--resume", o.resume, "continue from the checkpoint in the output folder");
  app.add_flag("--resize", o.resize, "resize images of another size (else they are rejected)");
  std::string precision = "fp32";
  diffuse::programs::add_precision_option(app, precision);
  std::string device;
  diffuse::programs::add_device_option(app, device);
  app.set_version_flag("--version", diffuse::programs::info_line());
  bool info = false;
  app.add_flag("--info", info, "print version, instruction set, threads and device, then exit");
  (void)steps;
  (void)epochs;
  if (const int code = diffuse::programs::parse_command_line(app, argc, argv, "diffuse-train"); code >= 0) return code;
  if (o.threads > 0) diffuse::set_num_threads(o.threads);
  diffuse::programs::apply_precision(precision, "diffuse-train");
  if (!diffuse::programs::apply_device(device, "diffuse-train", false)) return 1;
  std::fprintf(stderr, "%s\n", diffuse::programs::info_line().c_str());
  if (info) {
    std::fprintf(stderr, "%s\n", diffuse::programs::bf16_line().c_str());
    return 0;
  }
  if (app.count("--label-dropout") && o.labels.empty()) {
    std::fprintf(stderr, "diffuse-train: error: --label-dropout goes with --labels (class-conditional training)\n");
    return 2;
  }
  for (const CLI::Option* opt : app.get_options())
    if (opt->count() > 0)
      for (const std::string& name : opt->get_lnames()) o.given.insert("--" + name);
  try {
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
