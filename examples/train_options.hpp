// diffuse-train's command line: its options, and the checks they pass before any file is
// read (shared by the program and its fuzz target, tests/fuzz/fuzz_options.cpp).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "program.hpp"
#include "train.hpp"

namespace diffuse::programs {

/// The options of diffuse-train that are not TrainOptions.
struct TrainCommandLine {
  std::string precision = "fp32";  ///< --precision
  std::string device;              ///< --device (its default from DIFFUSE_DEVICE)
  bool info = false;               ///< --info
};

/// Declares every option of diffuse-train on `app`, storing into `o` and `c`.
inline void add_train_options(CLI::App& app, TrainOptions& o, TrainCommandLine& c) {
  // A later occurrence of an option wins (cmake/setup.sh main passes defaults first).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--data", o.data, "IDX image file (plain or .gz) or folder of images")->capture_default_str();
  app.add_option("--labels", o.labels, "IDX label file: train a class-conditional model (classes 0-9)");
  app.add_option("--label-dropout", o.label_dropout,
                 "with --labels: fraction of images shown without their label (for guidance)")
      ->check(real_in(0, 1))->capture_default_str();
  app.add_option("--model", o.model, "model configuration")
      ->check(CLI::IsMember(model_names))->capture_default_str();
  app.add_option("--out", o.out, "output folder (checkpoint, log, samples)")->capture_default_str();
  app.add_option("--batch", o.batch, "images per step")->check(integer_in(1, max_batch))->capture_default_str();
  app.add_option("--lr", o.lr, "learning rate (AdamW)")->check(real_in(0, 10, true))->capture_default_str();
  app.add_option("--warmup", o.warmup, "steps of linear learning-rate warm-up")
      ->check(integer_in(0, max_steps))->capture_default_str();
  app.add_option("--steps", o.steps, "stop after this many steps in all")
                    ->check(integer_in(1, max_steps));
  app.add_option("--epochs", o.epochs, "stop after this many passes over the data")
                     ->check(real_in(0, 1e6, true));
  app.add_option("--minutes", o.minutes, "stop after this much time")->check(real_in(0, 1e7, true));
  app.add_option("--threads", o.threads, "OpenMP threads (default: all cores)")
      ->check(integer_in(1, max_threads));
  app.add_option("--seed", o.seed, "random seed (weights, shuffling, noise)")->capture_default_str();
  app.add_option("--ema-half-life", o.ema_half_life, "EMA half-life in millions of images")
      ->check(real_in(0, 1e6, true))->capture_default_str();
  app.add_option("--sample-every", o.sample_every, "write a sample grid every N steps (0: only at the end)")
      ->check(integer_in(0, max_steps))->capture_default_str();
  app.add_option("--checkpoint-every", o.checkpoint_every, "save a checkpoint every N steps (0: only at the end)")
      ->check(integer_in(0, max_steps))->capture_default_str();
  app.add_option("--log-every", o.log_every, "progress line every N steps when not on a terminal")
      ->check(integer_in(1, max_steps))->capture_default_str();
  app.add_flag("--resume", o.resume, "continue from the checkpoint in the output folder");
  app.add_flag("--resize", o.resize, "resize images of another size (else they are rejected)");
  add_precision_option(app, c.precision);
  add_device_option(app, c.device);
  app.set_version_flag("--version", info_line());
  app.add_flag("--info", c.info, "print version, instruction set, threads and device, then exit");
}

/// The checks of the options among themselves (UsageError), after parsing and before any
/// file is read; records the options given on the command line in o.given.
inline void check_train_options(TrainOptions& o, const CLI::App& app) {
  if (app.count("--label-dropout") && o.labels.empty())
    throw UsageError("--label-dropout goes with --labels (class-conditional training)");
  for (const CLI::Option* opt : app.get_options())
    if (opt->count() > 0)
      for (const std::string& name : opt->get_lnames()) o.given.insert("--" + name);
}

}  // namespace diffuse::programs
