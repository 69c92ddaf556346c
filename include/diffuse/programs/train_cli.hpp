// diffuse-train's command line on CLI11: its options, and the checks they pass before any
// file is read (shared by the program and the fuzz target tests/fuzz/fuzz_options.cpp).
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <string>
#include <vector>

#include "diffuse/programs/cli.hpp"
#include "diffuse/programs/common.hpp"
#include "diffuse/programs/train_options.hpp"

namespace diffuse::programs {

/// Declares every option of diffuse-train on `app`, storing into `o` and `c`; `--model`
/// takes one of `models` (default: o.model if among them, else the first).
inline void add_train_options(CLI::App& app, TrainOptions& o, TrainCommandLine& c,
                              const std::vector<std::string>& models = model_names) {
  if (std::find(models.begin(), models.end(), o.model) == models.end() && !models.empty()) o.model = models.front();
  // A later occurrence of an option wins (cmake/setup.sh main passes defaults first).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--data", o.data, "IDX image file (plain or .gz) or folder of images")->capture_default_str();
  app.add_option("--labels", o.labels, "IDX label file: train a class-conditional model (classes 0-9)");
  app.add_option("--label-dropout", o.label_dropout,
                 "with --labels: fraction of images shown without their label (for guidance)")
      ->check(real_in(0, 1))->capture_default_str();
  app.add_option("--model", o.model, "model configuration")
      ->check(CLI::IsMember(models))->capture_default_str();
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
  app.add_option("--ema-rampup", o.ema_rampup,
                 "EMA ramp-up (EDM's ema_rampup_ratio): the half-life is at most this fraction of the images seen "
                 "so far, so that early averages forget the initial weights; 0: off (the half-life from the start)")
      ->check(real_in(0, 1000))->capture_default_str();
  app.add_option("--sample-every", o.sample_every, "write a sample grid every N steps (0: only at the end)")
      ->check(integer_in(0, max_steps))->capture_default_str();
  app.add_option("--checkpoint-every", o.checkpoint_every, "save a checkpoint every N steps (0: only at the end)")
      ->check(integer_in(0, max_steps))->capture_default_str();
  app.add_option("--ema-snapshot-every", o.ema_snapshot_every,
                 "write the power-function EMAs (EDM2, widths 0.05 and 0.10) to ema-snapshots/ every N steps and at "
                 "the end (0: only at the end), for diffuse-eval ema: about twice the weights' size each time")
      ->check(integer_in(0, max_steps))->capture_default_str();
  app.add_option("--eval-every", o.eval_every,
                 "log the Fréchet distance of --eval-count images (EMA weights, 18-step Heun, the same noise each "
                 "time) against --eval-reference every N steps and at the end (0: never)")
      ->check(integer_in(0, max_steps))->capture_default_str();
  app.add_option("--eval-classifier", o.eval_classifier, "the feature network for --eval-every (diffuse-eval classifier)");
  app.add_option("--eval-reference", o.eval_reference, "real images for --eval-every: an IDX file or a folder");
  app.add_option("--eval-count", o.eval_count, "images generated for each --eval-every evaluation")
      ->check(integer_in(2, 1'000'000))->capture_default_str();
  app.add_option("--log-every", o.log_every, "progress line every N steps when not on a terminal")
      ->check(integer_in(1, max_steps))->capture_default_str();
  app.add_flag("--resume", o.resume, "continue from the checkpoint in the output folder");
  app.add_flag("--resize", o.resize, "resize images of another size (else they are rejected)");
  app.add_flag("--crop", o.crop, "take the centre square of non-square images (then resize them with --resize)");
  app.add_flag("--class-folders", o.class_folders,
               "--data is a folder of class folders (data/<class>/*.png, at most 10): train a class-conditional "
               "model, classes numbered in name order");
  app.add_flag("--xflip", o.xflip, "show each image mirrored left-right half of the time (augmentation)");
  app.add_option("--alpha", o.alpha, "transparent pixels of images with an alpha channel: composited onto white or "
                                     "black, or error")
      ->check(CLI::IsMember({"white", "black", "error"}))->capture_default_str();
  add_precision_option(app, c.precision);
  add_device_option(app, c.device);
  app.set_version_flag("--version", info_line());
  app.add_flag("--info", c.info, "print version, instruction set, threads and device, then exit");
}

/// The checks of the options among themselves (UsageError), after parsing and before any
/// file is read; records the options given on the command line in o.given.
inline void check_train_options(TrainOptions& o, const CLI::App& app) {
  if (app.count("--label-dropout") && !o.conditional())
    throw UsageError("--label-dropout goes with --labels or --class-folders (class-conditional training)");
  const bool eval_files = !o.eval_classifier.empty() || !o.eval_reference.empty();
  if (o.eval_every > 0 && (o.eval_classifier.empty() || o.eval_reference.empty()))
    throw UsageError("--eval-every needs --eval-classifier (made by diffuse-eval classifier) and --eval-reference");
  if (o.eval_every == 0 && (eval_files || app.count("--eval-count")))
    throw UsageError("--eval-classifier, --eval-reference and --eval-count go with --eval-every N");
  if (!o.labels.empty() && o.class_folders)
    throw UsageError("--labels (an IDX label file) and --class-folders are two sources of labels: give one");
  for (const CLI::Option* opt : app.get_options())
    if (opt->count() > 0)
      for (const std::string& name : opt->get_lnames()) o.given.insert("--" + name);
}

}  // namespace diffuse::programs
