// diffuse-train: trains an EDM diffusion model on a folder of images or an IDX data set
// (MNIST, Fashion-MNIST), writing a progress line, a JSON-lines log, sample grids and
// checkpoints into the output folder. Ctrl-C saves a checkpoint; --resume goes on.
// With --labels it trains a class-conditional model for classifier-free guidance.
//
//   diffuse-train --data /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
//                 --model edm-mnist-small --minutes 5 --out runs/fashion
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include <diffuse/diffusion/guidance.hpp>
#include <diffuse/diffusion/precond.hpp>
#include <diffuse/diffusion/sampler.hpp>
#include <diffuse/io/image.hpp>
#include <diffuse/train/checkpoint.hpp>
#include <diffuse/train/trainer.hpp>

#include "program.hpp"

namespace {

using namespace diffuse;
using Clock = std::chrono::steady_clock;

struct Options {
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
  bool label_dropout_given = false;  // else a resumed run keeps its own
  std::uint64_t sample_every = 500;
  std::uint64_t checkpoint_every = 1000;
  std::uint64_t log_every = 10;
  std::size_t sample_count = 16;
  bool resume = false;
  bool resize = false;
};

// The progress line: rewritten in place on a terminal, plain lines otherwise.
class Progress {
 public:
  explicit Progress(std::uint64_t log_every) : tty_(isatty(fileno(stderr))), every_(log_every) {}
  void update(const train::StepReport& r, double smoothed_loss, double eta_seconds, bool force) {
    if (!tty_ && !force && r.step % every_ != 0) return;
    std::fprintf(stderr, "%sstep %llu | epoch %llu | loss %.4f | %.1f img/s | ETA %s%s", tty_ ? "\r\033[K" : "",
                 static_cast<unsigned long long>(r.step), static_cast<unsigned long long>(r.epoch), smoothed_loss,
                 r.images_per_second, eta_seconds >= 0 ? programs::duration_text(eta_seconds).c_str() : "-",
                 tty_ ? "" : "\n");
    std::fflush(stderr);
  }
  void end_line() {
    if (tty_) std::fputc('\n', stderr);
  }

 private:
  bool tty_;
  std::uint64_t every_;
};

template <nn::UNetConfig Cfg>
int run(const Options& o) {
  using Net = nn::UNet<Cfg>;
  using Model = diffusion::EDMPrecond<Net>;
  constexpr std::size_t R = Cfg.image_size, C = Cfg.image_channels;
  namespace fs = std::filesystem;

  const fs::path out(o.out);
  fs::create_directories(out);
  const std::string checkpoint = (out / "checkpoint.safetensors").string();
  const std::string log_path = (out / "log.jsonl").string();

  const auto data = programs::load_images<R, R, C>(o.data, o.labels, o.resize);
  std::fprintf(stderr, "data: %zu images of %zux%zux%zu from %s\n", data.size(), R, R, C, o.data.c_str());

  train::TrainerConfig cfg;
  cfg.batch = o.batch;
  cfg.seed = o.seed;
  cfg.optimizer.lr = o.lr;
  cfg.optimizer.warmup_steps = o.warmup;
  cfg.ema.half_life_images = o.ema_half_life * 1e6;
  cfg.label_dropout = o.label_dropout;
  if (o.resume) {  // a resumed run keeps the seed and batch it started with
    if (!fs::exists(checkpoint))
      throw io::DataError(checkpoint, "no checkpoint to resume from in " + o.out);
    const train::CheckpointInfo saved = train::read_checkpoint_info(checkpoint);
    cfg.seed = saved.seed;
    if (saved.batch) cfg.batch = saved.batch;
    if (!o.label_dropout_given)
      if (const auto p = saved.number(train::keys::label_dropout)) cfg.label_dropout = *p;
  }
  auto model = std::make_unique<Model>(diffusion::Edm{}, cfg.seed);
  train::Trainer trainer(*model, data, cfg);
  if (o.resume) {
    train::load_checkpoint(checkpoint, o.model, *model, trainer);
    std::fprintf(stderr, "resumed from %s at step %llu\n", checkpoint.c_str(),
                 static_cast<unsigned long long>(trainer.steps_done()));
  }

  auto save = [&] {
    train::save_checkpoint(checkpoint, o.model, *model, trainer,
                           {{train::keys::lr, std::to_string(o.lr)},
                            {train::keys::data, o.data},
                            {train::keys::label_dropout, std::to_string(cfg.label_dropout)}});
    const optim::EmaApplied ema_weights(trainer.ema(), *model);  // the weights sampling uses
    train::export_weights((out / "model_ema.safetensors").string(), model->net());
  };
  // A class-conditional model draws whole rows, one column per class, guided unless it
  // never saw an image without its label (then it has no unconditional model to guide from).
  constexpr std::size_t classes = Cfg.classes;
  const double guidance = cfg.label_dropout > 0 ? programs::default_guidance : 1.0;
  const std::size_t sample_count = classes ? (o.sample_count + classes - 1) / classes * classes : o.sample_count;
  auto write_samples = [&](const std::string& name) {
    Tensor<float, typename Net::Batch> x(sample_count);
    const diffusion::Heun<diffusion::KarrasSchedule> heun{.steps = 18};
    std::vector<int> labels(sample_count, nn::no_label);
    for (std::size_t i = 0; i < sample_count && classes > 0; ++i) labels[i] = static_cast<int>(i % classes);
    const optim::EmaApplied ema_weights(trainer.ema(), *model);
    heun.sample(diffusion::Guided(*model, labels, guidance), x.view(), 1234);
    io::write_png((out / name).string(),
                  io::image_grid(TensorView<const float, typename Net::Batch>(x.view()), classes));
  };

  std::FILE* log = std::fopen(log_path.c_str(), o.resume ? "a" : "w");
  if (!log) throw io::DataError(log_path, "cannot write the log");
  std::fprintf(log, "{\"info\":\"%s\",\"model\":\"%s\",\"classes\":%zu,\"batch\":%zu,\"seed\":%llu}\n",
               programs::info_line().c_str(), o.model.c_str(), classes, cfg.batch,
               static_cast<unsigned long long>(cfg.seed));

  const std::uint64_t first_step = trainer.steps_done();
  std::uint64_t last_step = o.steps ? o.steps : ~std::uint64_t{0};
  if (o.epochs > 0)
    last_step = std::min<std::uint64_t>(last_step, static_cast<std::uint64_t>(o.epochs * trainer.batches_per_epoch()));
  const auto start = Clock::now();
  const double budget = o.minutes > 0 ? o.minutes * 60.0 : -1.0;
  Progress progress(o.log_every);
  double smoothed = 0, weight = 0;
  programs::install_stop_handler();
  bool stopped = false;
  while (trainer.steps_done() < last_step) {
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    if (budget > 0 && elapsed >= budget) break;
    if (programs::stop_requested) {
      stopped = true;
      break;
    }
    const train::StepReport r = trainer.step();
    if (!r.skipped) {  // bias-corrected exponential average of the loss
      smoothed = 0.98 * smoothed + 0.02 * r.loss;
      weight = 0.98 * weight + 0.02;
    }
    std::fprintf(log,
                 "{\"step\":%llu,\"epoch\":%llu,\"loss\":%.6g,\"grad_norm\":%.6g,\"lr\":%.6g,\"seconds\":%.6g,"
                 "\"images_per_second\":%.6g,\"skipped\":%s}\n",
                 static_cast<unsigned long long>(r.step), static_cast<unsigned long long>(r.epoch), r.loss, r.grad_norm,
                 r.learning_rate, r.seconds, r.images_per_second, r.skipped ? "true" : "false");
    std::fflush(log);
    if (r.skipped) std::fprintf(stderr, "\nstep %llu skipped: the loss or gradient was not finite\n",
                                static_cast<unsigned long long>(r.step));
    const double done = static_cast<double>(r.step - first_step);
    const double per_step = (elapsed + r.seconds) / done;
    double eta = -1;
    if (last_step != ~std::uint64_t{0}) eta = per_step * static_cast<double>(last_step - r.step);
    if (budget > 0) eta = eta < 0 ? budget - elapsed : std::min(eta, budget - elapsed);
    progress.update(r, weight > 0 ? smoothed / weight : r.loss, eta, false);
    if (o.sample_every && r.step % o.sample_every == 0) {
      char name[64];
      std::snprintf(name, sizeof name, "samples-%06llu.png", static_cast<unsigned long long>(r.step));
      write_samples(name);
    }
    if (o.checkpoint_every && r.step % o.checkpoint_every == 0) save();
  }
  progress.end_line();
  std::fclose(log);
  save();
  write_samples("samples.png");
  std::fprintf(stderr, "%s after %llu steps (%s): checkpoint %s, samples %s\n",
               stopped ? "interrupted" : "done", static_cast<unsigned long long>(trainer.steps_done()),
               programs::duration_text(std::chrono::duration<double>(Clock::now() - start).count()).c_str(),
               checkpoint.c_str(), (out / "samples.png").c_str());
  return stopped ? 130 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"diffuse-train: trains an EDM diffusion model on images"};
  // A later occurrence of an option wins (cmake/setup.sh main passes defaults first).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--data", o.data, "IDX image file (plain or .gz) or folder of images")->capture_default_str();
  app.add_option("--labels", o.labels, "IDX label file: train a class-conditional model (classes 0-9)");
  app.add_option("--label-dropout", o.label_dropout,
                 "with --labels: fraction of images shown without their label (for guidance)")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--model", o.model, "model configuration")
      ->check(CLI::IsMember(diffuse::programs::model_names))->capture_default_str();
  app.add_option("--out", o.out, "output folder (checkpoint, log, samples)")->capture_default_str();
  app.add_option("--batch", o.batch, "images per step")->check(diffuse::programs::positive_number)->capture_default_str();
  app.add_option("--lr", o.lr, "learning rate (AdamW)")->check(diffuse::programs::positive_number)->capture_default_str();
  app.add_option("--warmup", o.warmup, "steps of linear learning-rate warm-up")->capture_default_str();
  auto* steps = app.add_option("--steps", o.steps, "stop after this many steps in all")->check(diffuse::programs::positive_number);
  auto* epochs = app.add_option("--epochs", o.epochs, "stop after this many passes over the data")->check(diffuse::programs::positive_number);
  app.add_option("--minutes", o.minutes, "stop after this much time")->check(diffuse::programs::positive_number);
  app.add_option("--threads", o.threads, "OpenMP threads (default: all cores)")->check(diffuse::programs::positive_number);
  app.add_option("--seed", o.seed, "random seed (weights, shuffling, noise)")->capture_default_str();
  app.add_option("--ema-half-life", o.ema_half_life, "EMA half-life in millions of images")
      ->check(diffuse::programs::positive_number)->capture_default_str();
  app.add_option("--sample-every", o.sample_every, "write a sample grid every N steps (0: only at the end)")->capture_default_str();
  app.add_option("--checkpoint-every", o.checkpoint_every, "save a checkpoint every N steps (0: only at the end)")
      ->capture_default_str();
  app.add_option("--log-every", o.log_every, "progress line every N steps when not on a terminal")
      ->check(diffuse::programs::positive_number)->capture_default_str();
  app.add_flag("--resume", o.resume, "continue from the checkpoint in the output folder");
  app.add_flag("--resize", o.resize, "resize images of another size (else they are rejected)");
  app.set_version_flag("--version", diffuse::programs::info_line());
  bool info = false;
  app.add_flag("--info", info, "print version, instruction set, threads and device, then exit");
  (void)steps;
  (void)epochs;
  if (const int code = diffuse::programs::parse_command_line(app, argc, argv, "diffuse-train"); code >= 0) return code;
  if (o.threads > 0) diffuse::set_num_threads(o.threads);
  std::fprintf(stderr, "%s\n", diffuse::programs::info_line().c_str());
  if (info) return 0;
  if (app.count("--label-dropout") && o.labels.empty()) {
    std::fprintf(stderr, "diffuse-train: error: --label-dropout goes with --labels (class-conditional training)\n");
    return 2;
  }
  o.label_dropout_given = app.count("--label-dropout") > 0;
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
                                         [&]<diffuse::nn::UNetConfig Cfg>() { return run<Cfg>(o); });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "diffuse-train: error: %s\n", e.what());
    return 1;
  }
}
