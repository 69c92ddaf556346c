// diffuse-train's training run for one model configuration (see train.hpp).
#pragma once

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "diffuse/diffusion/guidance.hpp"
#include "diffuse/diffusion/precond.hpp"
#include "diffuse/diffusion/sampler.hpp"
#include "diffuse/io/image.hpp"
#include "diffuse/train/checkpoint.hpp"
#include "diffuse/train/ema_snapshots.hpp"
#include "diffuse/train/trainer.hpp"
#include "diffuse/unet.hpp"
#include <nlohmann/json.hpp>

#include "diffuse/programs/common.hpp"
#include "diffuse/programs/data.hpp"
#include "diffuse/programs/models.hpp"
#include "diffuse/programs/train_options.hpp"

namespace diffuse::programs {

namespace detail {

using Clock = std::chrono::steady_clock;

// The progress line: rewritten in place on a terminal, plain lines otherwise.
class Progress {
 public:
  explicit Progress(std::uint64_t log_every) : tty_(isatty(fileno(stderr))), every_(log_every) {}
  void update(const train::StepReport& r, double smoothed_loss, double eta_seconds, bool force) {
    if (!tty_ && !force && r.step % every_ != 0) return;
    std::fprintf(stderr, "%sstep %llu | epoch %llu | loss %.4f | %.1f img/s | ETA %s%s", tty_ ? "\r\033[K" : "",
                 static_cast<unsigned long long>(r.step), static_cast<unsigned long long>(r.epoch), smoothed_loss,
                 r.images_per_second, eta_seconds >= 0 ? duration_text(eta_seconds).c_str() : "-",
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

// FNV-1a over bytes: the fingerprint the processes of a data-parallel run compare.
inline std::uint64_t fnv1a(const void* p, std::size_t n, std::uint64_t h = 0xcbf29ce484222325ull) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

// A fingerprint of everything that must be the same on every process of a data-parallel
// run: the options that shape the run, every image and label of the data, and the state
// the run starts from (weights, EMAs, AdamW moments, counters: a checkpoint each reads).
template <class Source, class Model, class Trainer>
std::uint64_t run_fingerprint(const std::string& settings, const Source& data, Model& model, Trainer& trainer) {
  std::uint64_t h = fnv1a(settings.data(), settings.size());
  Tensor<float, typename Source::Batch> image(1);
  for (std::size_t i = 0; i < data.size(); ++i) {
    data.load(i, image.item(0));
    const int label = data.label(i);
    h = fnv1a(image.data(), image.size() * sizeof(float), h);
    h = fnv1a(&label, sizeof label, h);
  }
  const auto add = [&](std::string_view, std::span<float> v, auto&&...) {
    update_host(v.data(), v.size());  // the GPU's copy, while that is the device
    h = fnv1a(v.data(), v.size_bytes(), h);
  };
  model.for_each_param(add);
  trainer.for_each_state(add);
  const auto counters = trainer.counters();
  return fnv1a(&counters, sizeof counters, h);
}

}  // namespace detail

template <nn::UNetConfig Cfg>
int train_model(const TrainOptions& o) {
  using Net = nn::UNet<Cfg>;
  using Model = diffusion::EDMPrecond<Net>;
  constexpr std::size_t R = Cfg.image_size, C = Cfg.image_channels;
  namespace fs = std::filesystem;

  // Data parallelism (mpirun): process 0 alone writes files and prints; every process
  // trains on its share of each batch.
  train::Communicator* const comm = o.communicator;
  const bool lead = !comm || comm->rank() == 0;
  const fs::path out(o.out);
  if (lead) fs::create_directories(out);
  const std::string checkpoint = (out / "checkpoint.safetensors").string();
  const std::string log_path = (out / "log.jsonl").string();
  // The data set stays on the host (the trainer copies each batch to the GPU, when it
  // trains there): a lambda so that its device scope ends before the model is made.
  const TrainingData<R, R, C> loaded = [&] {
    const DeviceScope host("cpu");
    return load_training_data<R, R, C>(o);
  }();
  const auto& data = loaded.images;
  if (lead) std::fprintf(stderr, "data: %s\n", loaded.describe(o.data, o).c_str());

  train::TrainerConfig cfg;
  cfg.batch = o.batch;
  cfg.seed = o.seed;
  cfg.optimizer.lr = o.lr;
  cfg.optimizer.warmup_steps = o.warmup;
  double ema_half_life = o.ema_half_life;  // millions of images, as the option and the checkpoint say
  double ema_rampup = o.ema_rampup;
  cfg.label_dropout = o.label_dropout;
  cfg.xflip = o.xflip;
  if (o.resume) {  // a resumed run continues the run it resumes
    if (!fs::exists(checkpoint))
      throw io::DataError(checkpoint, "no checkpoint to resume from in " + o.out);
    const train::CheckpointInfo saved = train::read_checkpoint_info(checkpoint);
    // Seed and batch decide which images and noise each step sees: another value would be
    // another run.
    if (o.given.count("--seed") && o.seed != saved.seed)
      throw UsageError("--seed " + std::to_string(o.seed) + " differs from the run's seed " + std::to_string(saved.seed) +
                       " (a resumed run keeps its seed; start a new run in another --out)");
    if (o.given.count("--batch") && saved.batch && o.batch != saved.batch)
      throw UsageError("--batch " + std::to_string(o.batch) + " differs from the run's batch " +
                       std::to_string(saved.batch) + " (a resumed run keeps its batch; start a new run in another --out)");
    cfg.seed = saved.seed;
    if (saved.batch) cfg.batch = saved.batch;
    // Hyper-parameters: the run's own unless the option is given; an override is said.
    auto keep = [&](const char* option, const char* key, double value, double lo, double hi) {
      const auto was = saved.number(key);
      if (!was) return value;  // a checkpoint of an older version
      if (!(*was >= lo && *was <= hi))  // the option's own range
        throw io::DataError(checkpoint, std::string("metadata '") + key + "' is " + exact_text(*was) + ", outside [" +
                                            number_text(lo) + ", " + number_text(hi) + "] (" + option + ")");
      if (!o.given.count(option)) return *was;
      if (value != *was && lead)
        std::fprintf(stderr, "%s %s overrides the run's %s\n", option, exact_text(value).c_str(), exact_text(*was).c_str());
      return value;
    };
    cfg.optimizer.lr = keep("--lr", train::keys::lr, cfg.optimizer.lr, 1e-30, 10);
    cfg.optimizer.warmup_steps = static_cast<std::uint64_t>(
        keep("--warmup", train::keys::warmup, static_cast<double>(cfg.optimizer.warmup_steps), 0, double(max_steps)));
    ema_half_life = keep("--ema-half-life", train::keys::ema_half_life, ema_half_life, 1e-30, 1e6);
    // (A checkpoint from before --ema-rampup ran with 0.05, the option's default.)
    ema_rampup = keep("--ema-rampup", train::keys::ema_rampup, ema_rampup, 0, 1000);
    cfg.label_dropout = keep("--label-dropout", train::keys::label_dropout, cfg.label_dropout, 0, 1);
    if (saved.metadata.count(train::keys::xflip)) cfg.xflip = o.xflip || saved.metadata.at(train::keys::xflip) == "1";
  }
  if (cfg.xflip && lead) std::fprintf(stderr, "augmentation: images mirrored left-right half of the time (--xflip)\n");
  cfg.ema.half_life_images = ema_half_life * 1e6;
  cfg.ema.rampup_ratio = ema_rampup;
  cfg.power_ema = {0.05, 0.10};  // EDM2's pair, for post-hoc EMA (diffuse-eval ema)
  cfg.communicator = comm;
  if (comm && cfg.batch < comm->size())
    throw UsageError("--batch " + std::to_string(cfg.batch) + " is smaller than the " + std::to_string(comm->size()) +
                     " processes of this run: each needs at least one image of every batch");
  auto model = std::make_unique<Model>(diffusion::Edm{}, cfg.seed);
  train::Trainer trainer(*model, data, cfg);
  if (o.resume) {  // every process reads the checkpoint (on a file system they share)
    const bool from_ema = train::load_checkpoint(checkpoint, o.model, *model, trainer).power_ema_from_ema;
    if (from_ema && lead)
      std::fprintf(stderr, "%s has no power-function EMAs (an older checkpoint): they start from its EMA weights\n",
                   checkpoint.c_str());
    if (lead)
      std::fprintf(stderr, "resumed from %s at step %llu\n", checkpoint.c_str(),
                   static_cast<unsigned long long>(trainer.steps_done()));
  }
  if (comm) {  // the processes must run the same run on the same data, from the same state
    const nlohmann::json settings = {o.model, o.conditional(), cfg.batch, cfg.seed, exact_text(cfg.optimizer.lr),
                                     cfg.optimizer.warmup_steps, exact_text(ema_half_life), exact_text(ema_rampup),
                                     exact_text(cfg.label_dropout), cfg.xflip, o.steps, exact_text(o.epochs),
                                     exact_text(o.minutes), data.size()};
    if (!comm->same_everywhere(detail::run_fingerprint(settings.dump(), data, *model, trainer)))
      throw UsageError("the " + std::to_string(comm->size()) + " processes of this run differ in their options, data, "
                       "labels or checkpoint (every process must be given the same ones)");
    if (lead)
      std::fprintf(stderr, "data parallel: %zu processes, %zu-%zu images of each batch of %zu per process\n",
                   comm->size(), cfg.batch / comm->size(), (cfg.batch + comm->size() - 1) / comm->size(), cfg.batch);
  }

  // Where to stop, checked before the log or a checkpoint is written.
  std::uint64_t last_step = o.steps ? o.steps : ~std::uint64_t{0};
  if (o.epochs > 0) {
    const std::size_t per_epoch = trainer.batches_per_epoch();
    const auto epoch_steps = static_cast<std::uint64_t>(o.epochs * static_cast<double>(per_epoch));
    if (epoch_steps == 0)
      throw UsageError("--epochs " + number_text(o.epochs) + " is less than one step: an epoch of the " +
                       std::to_string(data.size()) + " images is " + std::to_string(per_epoch) + " step(s) of " +
                       std::to_string(cfg.batch) + "; give --epochs " + number_text(1.0 / static_cast<double>(per_epoch)) +
                       " or more");
    last_step = std::min(last_step, epoch_steps);
  }

  auto save = [&] {
    train::save_checkpoint(checkpoint, o.model, *model, trainer,
                           {{train::keys::lr, exact_text(cfg.optimizer.lr)},
                            {train::keys::warmup, std::to_string(cfg.optimizer.warmup_steps)},
                            {train::keys::ema_half_life, exact_text(ema_half_life)},
                            {train::keys::ema_rampup, exact_text(ema_rampup)},
                            {train::keys::data, o.data},
                            {train::keys::label_dropout, exact_text(cfg.label_dropout)},
                            {train::keys::xflip, cfg.xflip ? "1" : "0"},
                            {train::keys::class_names, nlohmann::json(loaded.classes).dump()}});
    const optim::EmaApplied ema_weights(trainer.ema(), *model);  // the weights sampling uses
    train::export_weights((out / "model_ema.safetensors").string(), model->net(), o.model);
  };
  // The power-function EMAs now, for post-hoc EMA; once per time (a resumed run that
  // stops where it started writes nothing new).
  std::uint64_t snapshot_images = ~std::uint64_t{0};
  auto snapshot = [&] {
    if (trainer.counters().images_seen == 0 || trainer.counters().images_seen == snapshot_images) return;
    train::save_power_ema_snapshots((out / "ema-snapshots").string(), o.model, *model, trainer);
    snapshot_images = trainer.counters().images_seen;
  };
  // A class-conditional model draws whole rows, one column per class of the data, guided
  // unless it never saw an image without its label (then it has no unconditional model to
  // guide from).
  const std::size_t classes = Cfg.classes == 0 ? 0 : loaded.classes.empty() ? Cfg.classes : loaded.classes.size();
  const double guidance = cfg.label_dropout > 0 ? default_guidance : 1.0;
  const std::size_t sample_count = classes ? (o.sample_count + classes - 1) / classes * classes : o.sample_count;
  auto write_samples = [&](const std::string& name) {
    Tensor<float, typename Net::Batch> x(sample_count);
    const diffusion::Heun<diffusion::KarrasSchedule> heun{.steps = 18};
    std::vector<int> labels(sample_count, nn::no_label);
    for (std::size_t i = 0; i < sample_count && classes > 0; ++i) labels[i] = static_cast<int>(i % classes);
    const optim::EmaApplied ema_weights(trainer.ema(), *model);
    heun.sample(diffusion::Guided(*model, labels, guidance), x.view(), 1234);
    update_host(x);  // from the GPU, when training runs there
    const io::Image8 grid = io::image_grid(TensorView<const float, typename Net::Batch>(x.view()), classes);
    io::write_png((out / name).string(), io::upscale_nearest(grid, io::readable_scale(grid.width)));
  };

  // --eval-every: the classifier and the reference's statistics, read before training
  // starts so that a bad file stops the run at once.
  FrechetFunction frechet;
  if (o.eval_every > 0 && lead) {
    if (!o.frechet) throw UsageError("--eval-every: this program was built without the Fréchet distance");
    std::size_t reference_count = 0;
    const DeviceScope host("cpu");  // the classifier runs on the CPU (its pooling has no device body)
    frechet = o.frechet(R, R, C, o.eval_classifier, o.eval_reference, reference_count);
    std::fprintf(stderr, "evaluation: Fréchet distance of %zu images against %zu of %s every %llu steps\n",
                 o.eval_count, reference_count, o.eval_reference.c_str(), static_cast<unsigned long long>(o.eval_every));
  }

  std::FILE* log = lead ? std::fopen(log_path.c_str(), o.resume ? "a" : "w") : nullptr;
  if (lead && !log) throw io::DataError(log_path, "cannot write the log");
  // One JSON object per line, written by a JSON library: a diverging run's NaN or infinite
  // loss is null, and every line parses.
  auto log_line = [&](const nlohmann::json& j) {
    std::fputs((j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n").c_str(), log);
    std::fflush(log);
  };
  if (lead)
    log_line({{"info", info_line()}, {"model", o.model}, {"classes", classes}, {"batch", cfg.batch},
              {"seed", cfg.seed}, {"processes", comm ? comm->size() : 1}});

  // The Fréchet distance of the EMA weights' images, drawn with the same noise (seed) and
  // labels each time so that the points of a run compare; batches of at most 100 images.
  std::uint64_t evaluated_step = ~std::uint64_t{0};
  auto evaluate = [&] {
    if (!frechet || trainer.steps_done() == evaluated_step) return;
    const auto t0 = detail::Clock::now();
    Tensor<float, typename Net::Batch> images(o.eval_count);
    const diffusion::Heun<diffusion::KarrasSchedule> heun{.steps = 18};
    {
      const optim::EmaApplied ema_weights(trainer.ema(), *model);
      for (std::size_t start = 0; start < o.eval_count; start += 100) {
        const std::size_t n = std::min<std::size_t>(100, o.eval_count - start);
        std::vector<int> labels(n, nn::no_label);
        for (std::size_t i = 0; i < n && classes > 0; ++i) labels[i] = static_cast<int>((start + i) % classes);
        heun.sample(diffusion::Guided(*model, labels, guidance), images.items(start, n), 0xE7A1 + start);
      }
    }
    update_host(images);  // from the GPU, when training runs there
    const double d = [&] {
      const DeviceScope host("cpu");  // as the classifier was made
      return frechet(images.data(), o.eval_count);
    }();
    const double seconds = std::chrono::duration<double>(detail::Clock::now() - t0).count();
    log_line({{"step", trainer.steps_done()}, {"frechet_distance", d}, {"eval_images", o.eval_count},
              {"eval_seconds", seconds}});
    std::fprintf(stderr, "\nstep %llu: Fréchet distance %.4g (%zu images, %s)\n",
                 static_cast<unsigned long long>(trainer.steps_done()), d, o.eval_count, duration_text(seconds).c_str());
    evaluated_step = trainer.steps_done();
  };

  const std::uint64_t first_step = trainer.steps_done();
  const auto start = detail::Clock::now();
  const double budget = o.minutes > 0 ? o.minutes * 60.0 : -1.0;
  detail::Progress progress(o.log_every);
  double smoothed = 0, weight = 0;
  install_stop_handler();
  bool stopped = false;
  while (trainer.steps_done() < last_step) {
    const double elapsed = std::chrono::duration<double>(detail::Clock::now() - start).count();
    // Whether to stop: process 0's clock and signals decide for every process.
    double stop[2] = {budget > 0 && elapsed >= budget ? 1.0 : 0.0, stop_requested ? 1.0 : 0.0};
    if (comm) comm->broadcast(stop);
    if (stop[0] != 0) break;
    if (stop[1] != 0) {
      stopped = true;
      break;
    }
    const train::StepReport r = trainer.step();
    if (!lead) continue;
    if (!r.skipped) {  // bias-corrected exponential average of the loss
      smoothed = 0.98 * smoothed + 0.02 * r.loss;
      weight = 0.98 * weight + 0.02;
    }
    nlohmann::json line = {{"step", r.step},
                           {"epoch", r.epoch},
                           {"loss", r.loss},
                           {"grad_norm", r.grad_norm},
                           {"lr", r.learning_rate},
                           {"seconds", r.seconds},
                           {"images_per_second", r.images_per_second},
                           {"skipped", r.skipped}};
    if (comm) line["reduce_seconds"] = r.reduce_seconds;  // of "seconds": summing over the processes
    log_line(line);
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
    if (o.ema_snapshot_every && r.step % o.ema_snapshot_every == 0) snapshot();
    if (o.eval_every && r.step % o.eval_every == 0) evaluate();
  }
  if (!lead) return stopped ? 130 : 0;
  progress.end_line();
  if (!stopped) evaluate();  // (an interrupted run stops at once)
  std::fclose(log);
  save();
  snapshot();
  write_samples("samples.png");
  std::fprintf(stderr, "%s after %llu steps (%s): checkpoint %s, samples %s\n",
               stopped ? "interrupted" : "done", static_cast<unsigned long long>(trainer.steps_done()),
               duration_text(std::chrono::duration<double>(detail::Clock::now() - start).count()).c_str(),
               checkpoint.c_str(), (out / "samples.png").c_str());
  return stopped ? 130 : 0;
}

/// The entry of configuration Cfg called `name`: an unconditional configuration trains
/// with and without labels (label_classes classes), a class-conditional one (Cfg.classes
/// > 0) only with labels.
template <nn::UNetConfig Cfg>
TrainEntry train_entry(std::string name) {
  if constexpr (Cfg.classes == 0)
    return {std::move(name), label_classes, &train_model<Cfg>, &train_model<labelled(Cfg)>};
  else
    return {std::move(name), Cfg.classes, nullptr, &train_model<Cfg>};
}

}  // namespace diffuse::programs
