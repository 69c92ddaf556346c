// The training loop: batches from an ImageSource, the preconditioned model's loss,
// backward, AdamW, EMA; a NaN/Inf guard; and a state that resumes bit-identically.
//
// Everything random in step s is derived from (seed, s): the epoch's shuffle from
// (seed, epoch), the sigma and noise of batch slot b from (seed, b, s) through
// diffusion::draw_training_noise, and (class-conditional models) whether slot b's label is
// dropped from (seed, label_stream | b, s), and (xflip) whether slot b is mirrored from
// (seed, xflip_stream | b, s).
// So the trainer's random state is just the seed and the step counter, a run resumed at
// step s continues exactly as the uninterrupted run would, and the numbers do not
// depend on the thread count.
//
// Data parallelism (TrainerConfig::communicator): every process takes its share of each
// batch, slots [begin, end) (batch_share), with the images, noise and labels of those
// slots, which are the ones a single process would give them; each computes its share of
// the batch's loss and gradient (the gradient scaled by share / batch), and the gradients
// are summed over the processes in one buffer before the same AdamW and EMA update on
// every process. The run is the single-process run up to the order of float additions,
// and resumes on any number of processes.
//
// A step whose loss or gradient norm is not finite changes nothing (no update, no EMA)
// and is reported as skipped; after `max_bad_steps` of them in a row the trainer throws
// TrainingError instead of wasting the run.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "diffuse/core/random.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/diffusion/loss.hpp"
#include "diffuse/diffusion/noise.hpp"
#include "diffuse/diffusion/precond.hpp"
#include "diffuse/nn/labels.hpp"
#include "diffuse/optim/adamw.hpp"
#include "diffuse/optim/ema.hpp"
#include "diffuse/optim/power_ema.hpp"
#include "diffuse/train/communicator.hpp"
#include "diffuse/train/image_source.hpp"

/// The training loop, its checkpoints, evaluation and the sources of training images.
namespace diffuse::train {

/// Training cannot go on (too many non-finite steps in a row).
class TrainingError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Settings of a Trainer.
struct TrainerConfig {
  std::size_t batch = 128;  ///< images per step
  std::uint64_t seed = 0;  ///< seed of every random draw (shuffle, sigma, noise, label dropout)
  optim::AdamWConfig optimizer{.lr = 1e-3, .weight_decay = 0.0, .warmup_steps = 0};  ///< AdamW's settings
  optim::EmaHalfLife ema{};  ///< the half-life of the weights' moving average
  /// Widths (sigma_rel) of EDM2 power-function EMAs kept besides it, e.g. {0.05, 0.10}
  /// for post-hoc EMA (optim/power_ema.hpp); none by default.
  std::vector<double> power_ema{};
  int max_bad_steps = 5;  ///< non-finite steps in a row before TrainingError
  /// Class-conditional models: probability that an image is shown without its label
  /// (-1), so the model also learns the unconditional denoiser that classifier-free
  /// guidance needs (EDM and Ho & Salimans use 0.1-0.2).
  double label_dropout = 0.1;
  /// Augmentation: each image of a batch mirrored left-right with probability 1/2 (EDM's
  /// --xflip; for data whose mirror image is as likely as the image).
  bool xflip = false;
  /// Data-parallel training: the processes that share every batch (each must have a
  /// Trainer with the same settings and data). Null: this process alone. Not owned.
  Communicator* communicator = nullptr;
};

/// What one step did.
struct StepReport {
  std::uint64_t step = 0;   ///< 1-based index of this step
  std::uint64_t epoch = 0;  ///< 0-based epoch the batch came from
  double loss = 0;          ///< the batch's loss (mean over images; the trainer's Loss)
  double grad_norm = 0;     ///< global gradient norm before clipping
  double learning_rate = 0;  ///< AdamW's learning rate for this step
  double seconds = 0;  ///< wall-clock time of the step
  double images_per_second = 0;  ///< batch / seconds
  double reduce_seconds = 0;  ///< of `seconds`, summing the loss and gradients over the processes
  bool skipped = false;     ///< non-finite loss or gradient: nothing was updated
};

/// Prefix of the EMA's state tensors: "ema.<param>" (Trainer::for_each_state, checkpoints).
inline constexpr std::string_view ema_prefix = "ema.";
/// Power-function EMAs' state tensors: optim::power_ema_prefix(sigma_rel) + "<param>",
/// e.g. "phema050.<param>" (Trainer::for_each_state, checkpoints).
inline constexpr std::string_view power_ema_stem = "phema";
/// Prefix of the optimiser's state tensors: "optim.<param>.exp_avg", "optim.<param>.exp_avg_sq".
inline constexpr std::string_view optimizer_prefix = "optim.";

/// Mirrors an (H, W, C) image left-right in place (TrainerConfig::xflip).
template <std::size_t H, std::size_t W, std::size_t C>
void flip_left_right(TensorView<float, Shape<H, W, C>> image) {
  float* p = image.data();
  for (std::size_t y = 0; y < H; ++y)
    for (std::size_t x = 0; x < W / 2; ++x)
      std::swap_ranges(p + (y * W + x) * C, p + (y * W + x + 1) * C, p + (y * W + W - 1 - x) * C);
}

/// Trains `Model` (a preconditioned network: loss(), loss_backward(), for_each_param(),
/// zero_grad()) on images from `Source` with the training loss `Loss` (diffusion::EDMLoss,
/// VPLoss, VELoss: the distribution of sigma and the weighting). A class-conditional model
/// (Model::classes > 0) is trained on the source's labels, which must all be classes of
/// the model.
template <class Model, ImageSource Source, diffusion::TrainingLoss Loss = diffusion::default_loss_t<Model>>
class Trainer {
 public:
  using Batch = typename Model::Batch;  ///< (N, H, W, C)
  using Image = drop_axes<Batch, 0>;  ///< (H, W, C)
  static_assert(std::is_same_v<Batch, typename Source::Batch>,
                "diffuse::train::Trainer: the data set's image shape differs from the model's");

  ///@{
  /// The shuffle's and the label dropout's generator streams, far from the per-image
  /// streams 0 .. batch-1 of the noise.
  static constexpr std::uint64_t shuffle_stream = std::uint64_t{1} << 62;
  static constexpr std::uint64_t label_stream = std::uint64_t{1} << 61;
  static constexpr std::uint64_t xflip_stream = std::uint64_t{1} << 60;  ///< xflip's stream
  ///@}
  /// Classes of the model (0: unconditional; the labels of the data are then unused).
  static constexpr std::size_t classes = nn::classes_v<Model>;

  /// Trains with default_loss(model.policy()).
  Trainer(Model& model, const Source& data, TrainerConfig config)
      : Trainer(model, data, config, diffusion::default_loss(model.policy())) {}
  /// Trains with `loss`. Throws std::invalid_argument for an empty batch, a data set
  /// smaller than one batch, a batch smaller than the number of processes, a label dropout
  /// outside [0, 1] or a label that is not a class.
  Trainer(Model& model, const Source& data, TrainerConfig config, Loss loss)
      : model_(model), data_(data), config_(config), loss_(loss), optimizer_(config.optimizer), ema_(model),
        power_ema_(model, config.power_ema), share_(share_of(config)), images_(share_.size()),
        noise_(share_.size()), sigma_(share_.size()), labels_(share_.size(), nn::no_label) {
    if (data.size() < config.batch)
      throw std::invalid_argument("diffuse::train::Trainer: the data set has " + std::to_string(data.size()) +
                                  " images, fewer than one batch of " + std::to_string(config.batch));
    if (!(config.label_dropout >= 0.0 && config.label_dropout <= 1.0))
      throw std::invalid_argument("diffuse::train::Trainer: label_dropout must be in [0, 1]");
    if constexpr (classes > 0) check_labels();
    optimizer_.init(model);
    if (config_.communicator) {  // the buffer the gradients are summed in
      std::size_t n = 0;
      model_.for_each_param([&](std::string_view, std::span<float>, std::span<float> g) { n += g.size(); });
      reduce_buffer_.resize(n);
    }
  }

  /// Batches per epoch (the last incomplete batch of an epoch is dropped).
  std::uint64_t batches_per_epoch() const noexcept { return data_.size() / config_.batch; }
  /// Steps taken so far (including skipped ones).
  std::uint64_t steps_done() const noexcept { return step_; }
  /// Images in the data set (with the batch size, it fixes which images each step uses).
  std::size_t data_size() const noexcept { return data_.size(); }
  const TrainerConfig& config() const noexcept { return config_; }  ///< The settings.
  const Loss& loss() const noexcept { return loss_; }  ///< The training loss.
  optim::AdamW& optimizer() noexcept { return optimizer_; }  ///< The optimiser (its state is part of a checkpoint).
  optim::Ema& ema() noexcept { return ema_; }  ///< The moving average of the weights (sampling uses it).
  optim::PowerEma& power_ema() noexcept { return power_ema_; }  ///< The power-function EMAs (config().power_ema).
  /// The slots of every batch this process computes (all of them without a communicator).
  BatchShare share() const noexcept { return share_; }

  /// One training step.
  StepReport step() {
    const auto t0 = std::chrono::steady_clock::now();
    const std::uint64_t s = step_;
    const std::size_t b = config_.batch;
    const std::uint64_t epoch = s / batches_per_epoch();
    const std::size_t first = (s % batches_per_epoch()) * b + share_.begin;  // this process's first image
    const std::size_t n = share_.size();
    shuffle_for(epoch);
    for (std::size_t i = 0; i < n; ++i) {  // slot share_.begin + i of the batch
      data_.load(order_[first + i], images_.item(i));
      if (config_.xflip) {
        Generator g(config_.seed, xflip_stream | (share_.begin + i), s);
        if (diffusion::draw_uniform(g) < 0.5) flip_left_right(images_.item(i));
      }
    }
    diffusion::draw_training_noise(loss_, config_.seed, s, share_.begin, std::span<float>(sigma_), noise_.view());
    update_device(images_);  // loaded and drawn on the host: to the GPU while that is the device
    update_device(noise_);
    StepReport r;
    r.step = s + 1;
    r.epoch = epoch;
    if constexpr (classes > 0) {
      for (std::size_t i = 0; i < n; ++i) {
        Generator g(config_.seed, label_stream | (share_.begin + i), s);
        labels_[i] = diffusion::draw_uniform(g) < config_.label_dropout ? nn::no_label : data_.label(order_[first + i]);
      }
      r.loss = model_.loss(loss_, images_.view(), sigma_, noise_.view(), labels_);
    } else {
      r.loss = model_.loss(loss_, images_.view(), sigma_, noise_.view());
    }
    // The batch's loss is the mean over all its images: each process's mean weighted by
    // its share (every process then sees the same loss and skips or steps alike).
    const double weight = static_cast<double>(n) / static_cast<double>(b);
    if (config_.communicator) {
      const auto t = std::chrono::steady_clock::now();
      double total = r.loss * weight;
      config_.communicator->sum(std::span<double>(&total, 1));
      r.loss = total;
      r.reduce_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
    }
    model_.zero_grad();
    if (std::isfinite(r.loss)) {
      model_.loss_backward(static_cast<float>(weight));
      if (config_.communicator) r.reduce_seconds += sum_gradients();
      r.learning_rate = optimizer_.learning_rate(optimizer_.step_count() + 1);
      r.grad_norm = optimizer_.step(model_);  // skips the update itself when not finite
    }
    r.skipped = !std::isfinite(r.loss) || !std::isfinite(r.grad_norm);
    if (r.skipped) {
      ++bad_in_a_row_;
    } else {
      bad_in_a_row_ = 0;
      ema_.update(model_, config_.ema, static_cast<double>(images_seen_), static_cast<double>(b));
      power_ema_.update(model_, static_cast<double>(images_seen_ + b), static_cast<double>(b));
      images_seen_ += b;
    }
    ++step_;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.images_per_second = static_cast<double>(b) / r.seconds;
    if (bad_in_a_row_ >= config_.max_bad_steps)
      throw TrainingError("diffuse: training stopped at step " + std::to_string(r.step) + ": the loss or gradient was " +
                          "not finite (NaN or Inf) for " + std::to_string(bad_in_a_row_) +
                          " steps in a row; try a lower learning rate or check the data");
    return r;
  }

  /// Runs `steps` steps, calling on_step(const StepReport&) after each.
  template <class F>
  void run(std::uint64_t steps, F&& on_step) {
    for (std::uint64_t i = 0; i < steps; ++i) on_step(step());
  }

  // ---- state for checkpoints ------------------------------------------------------

  /// The counters that, with the seed and the tensors of for_each_state, are the whole
  /// training state.
  struct Counters {
    ///@{
    /// The run's seed, the steps taken, the AdamW updates made and the images trained on.
    std::uint64_t seed = 0, steps = 0, optimizer_steps = 0, images_seen = 0;
    ///@}
  };
  /// The current counters (for a checkpoint).
  Counters counters() const noexcept { return {config_.seed, step_, optimizer_.step_count(), images_seen_}; }
  /// Restores counters saved by counters(); the seed must be the one this trainer runs with.
  void set_counters(const Counters& c) {
    if (c.seed != config_.seed)
      throw std::invalid_argument("diffuse::train::Trainer: the checkpoint was trained with seed " +
                                  std::to_string(c.seed) + ", this run uses " + std::to_string(config_.seed));
    step_ = c.steps;
    optimizer_.set_step_count(c.optimizer_steps);
    images_seen_ = c.images_seen;
    bad_in_a_row_ = 0;
    shuffled_epoch_ = ~std::uint64_t{0};
  }

  /// Calls f(std::string_view name, std::span<float> values) for every tensor of the
  /// training state besides the model's weights: "ema.<param>", the power-function EMAs'
  /// "phema050.<param>" ..., then the optimiser's "optim.<param>.exp_avg" and
  /// "optim.<param>.exp_avg_sq". On the GPU the spans are host copies (update_host before
  /// reading them, update_device after writing; the checkpoint functions do both).
  template <class F>
  void for_each_state(F&& f) {
    ema_.for_each_param([&](std::string_view name, std::span<float> v) {
      const std::string n = std::string(ema_prefix) + std::string(name);
      f(std::string_view(n), v);
    });
    power_ema_.for_each_param(f);
    optimizer_.for_each_state([&](std::string_view name, std::span<float> v) {
      const std::string n = std::string(optimizer_prefix) + std::string(name);
      f(std::string_view(n), v);
    });
  }

 private:
  static BatchShare share_of(const TrainerConfig& c) {
    if (c.batch == 0) throw std::invalid_argument("diffuse::train::Trainer: batch size must be at least 1");
    return c.communicator ? batch_share(c.batch, c.communicator->rank(), c.communicator->size())
                          : BatchShare{0, c.batch};
  }

  // Sums the gradients over the processes, through one buffer (one collective per step);
  // returns the seconds it took.
  double sum_gradients() {
    const auto t0 = std::chrono::steady_clock::now();
    std::size_t at = 0;
    model_.for_each_param([&](std::string_view, std::span<float>, std::span<float> g) {
      update_host(g.data(), g.size());
      std::copy(g.begin(), g.end(), reduce_buffer_.begin() + static_cast<std::ptrdiff_t>(at));
      at += g.size();
    });
    config_.communicator->sum(std::span<float>(reduce_buffer_));
    at = 0;
    model_.for_each_param([&](std::string_view, std::span<float>, std::span<float> g) {
      std::copy_n(reduce_buffer_.begin() + static_cast<std::ptrdiff_t>(at), g.size(), g.begin());
      update_device(g.data(), g.size());
      at += g.size();
    });
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  // Every image of the data set must have a label the model knows.
  void check_labels() const {
    for (std::size_t i = 0; i < data_.size(); ++i) {
      const int k = data_.label(i);
      if (k < 0 || static_cast<std::size_t>(k) >= classes)
        throw std::invalid_argument(
            k < 0 ? "diffuse::train::Trainer: the model is class-conditional but image " + std::to_string(i) +
                        " of the data set has no label"
                  : "diffuse::train::Trainer: image " + std::to_string(i) + " has label " + std::to_string(k) +
                        ", but the model has " + std::to_string(classes) + " classes (0.." +
                        std::to_string(classes - 1) + ")");
    }
  }

  // The order of epoch e: a Fisher-Yates shuffle drawn from (seed, e).
  void shuffle_for(std::uint64_t epoch) {
    if (epoch == shuffled_epoch_) return;
    Generator g(config_.seed, shuffle_stream | epoch);
    shuffle_indices(order_, data_.size(), g);
    shuffled_epoch_ = epoch;
  }

  Model& model_;
  const Source& data_;
  TrainerConfig config_;
  Loss loss_;
  optim::AdamW optimizer_;
  optim::Ema ema_;
  optim::PowerEma power_ema_;
  BatchShare share_;
  Tensor<float, Batch> images_, noise_;
  std::vector<float> sigma_;
  std::vector<int> labels_;
  std::vector<std::size_t> order_;
  std::vector<float> reduce_buffer_;  // the gradients while they are summed (data parallelism)
  std::uint64_t shuffled_epoch_ = ~std::uint64_t{0};
  std::uint64_t step_ = 0, images_seen_ = 0;
  int bad_in_a_row_ = 0;
};

}  // namespace diffuse::train
