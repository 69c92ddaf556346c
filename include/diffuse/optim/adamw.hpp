// AdamW (Loshchilov & Hutter 2019) with PyTorch's torch.optim.AdamW semantics, over the
// for_each_param contract of optim/params.hpp, with a linear learning-rate warm-up and
// optional gradient clipping by global norm.
//
// One step t = 1, 2, ... for every parameter p with gradient g (PyTorch's order):
//   p <- p (1 - lr_t wd)                                   decoupled weight decay
//   m <- beta1 m + (1 - beta1) g,  v <- beta2 v + (1 - beta2) g^2
//   p <- p - (lr_t / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// with lr_t = lr min(1, t / warmup_steps) (no warm-up when warmup_steps = 0). Element
// arithmetic is float, as PyTorch's on float32 tensors; the scalars are double.
//
// The state (the step count and, per parameter, the moments m and v) is exposed by name
// for checkpoints: "<param>.exp_avg" and "<param>.exp_avg_sq" as in PyTorch's state dict.
// It is created on the first step (or by init()) in for_each_param order; later steps
// check that the parameters still match. This file does not zero the gradients: call the
// model's zero_grad() after step().
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/optim/param_sweep.hpp"
#include "diffuse/optim/params.hpp"

namespace diffuse::optim {

namespace detail {

/// One element's update (the file-top formulas), on the host and on the GPU.
struct AdamWUpdate {
  float decay, one_b1, b2, one_b2, step_size, bc2_sqrt, eps;
  void operator()(float& p, float g, float& m, float& v) const {
    p *= decay;
    m += one_b1 * (g - m);  // PyTorch's lerp form of b1 m + (1 - b1) g
    v = v * b2 + one_b2 * g * g;
    p -= step_size * (m / (std::sqrt(v) / bc2_sqrt + eps));
  }
};

/// The update of elements [begin, end) of a parameter: arrays p, g, m, v.
struct AdamWRange {
  AdamWUpdate update;
  void operator()(float* const* a, std::int64_t begin, std::int64_t end, std::int64_t) const {
    float *p = a[0], *m = a[2], *v = a[3];
    const float* g = a[1];
    for (std::int64_t i = begin; i < end; ++i) update(p[i], g[i], m[i], v[i]);
  }
};

}  // namespace detail

/// Hyper-parameters of AdamW (defaults: PyTorch's).
struct AdamWConfig {
  double lr = 1e-3;            ///< Learning rate (after the warm-up).
  double beta1 = 0.9;          ///< Decay of the first moment m.
  double beta2 = 0.999;        ///< Decay of the second moment v.
  double eps = 1e-8;           ///< Added to sqrt(v) (bias-corrected) in the denominator.
  double weight_decay = 1e-2;  ///< Decoupled weight decay, scaled by the learning rate.
  std::uint64_t warmup_steps = 0;  ///< linear warm-up over this many steps; 0: none
  double max_grad_norm = 0.0;      ///< clip the global gradient norm to this; 0: no clipping
};

/// AdamW with PyTorch's semantics; see the file-top comment.
class AdamW {
 public:
  /// An optimiser with no state yet (created by init() or the first step()).
  explicit AdamW(AdamWConfig config = {}) : config_(config) {}

  ///@{
  /// The hyper-parameters (they may be changed between steps).
  AdamWConfig& config() noexcept { return config_; }
  const AdamWConfig& config() const noexcept { return config_; }
  ///@}

  /// Steps taken so far (PyTorch's "step" state).
  std::uint64_t step_count() const noexcept { return step_; }
  /// Sets the step count (restoring a checkpoint): the next step is s + 1.
  void set_step_count(std::uint64_t s) noexcept { step_ = s; }

  /// The learning rate of (1-based) step t, with the warm-up.
  double learning_rate(std::uint64_t t) const noexcept {
    if (config_.warmup_steps == 0) return config_.lr;
    return config_.lr * std::min(1.0, static_cast<double>(t) / static_cast<double>(config_.warmup_steps));
  }

  /// Creates zero moments for the model's parameters (done by the first step otherwise);
  /// call it before filling the state from a checkpoint.
  template <Parameterised Model>
  void init(Model& model) {
    slots_.clear();
    model.for_each_param([&](std::string_view name, std::span<float> value, std::span<float> grad) {
      if (grad.size() != value.size())
        throw std::invalid_argument("diffuse::optim::AdamW: parameter " + std::string(name) +
                                    " has a gradient of another size");
      // Zero moments, with a device copy while the GPU is the device.
      slots_.push_back({std::string(name), Buffer(value.size()), Buffer(value.size())});
    });
  }

  /// One update with the configured learning-rate schedule. Clips the gradients first
  /// when max_grad_norm > 0. Returns the global gradient norm before clipping. A
  /// non-finite norm skips the update (nothing changes, the step count included).
  template <Parameterised Model>
  double step(Model& model) {
    return step(model, learning_rate(step_ + 1));
  }

  /// One update with an explicit learning rate (for schedules of your own).
  template <Parameterised Model>
  double step(Model& model, double lr) {
    const double norm = config_.max_grad_norm > 0.0 ? clip_grad_norm(model, config_.max_grad_norm) : grad_norm(model);
    if (!std::isfinite(norm)) return norm;
    if (slots_.empty()) init(model);
    fill_sweep(model);  // before any update: a mismatch leaves the weights as they were
    ++step_;
    const double t = static_cast<double>(step_);
    const double bc1 = 1.0 - std::pow(config_.beta1, t), bc2 = 1.0 - std::pow(config_.beta2, t);
    const detail::AdamWUpdate update{static_cast<float>(1.0 - lr * config_.weight_decay),
                                     static_cast<float>(1.0 - config_.beta1), static_cast<float>(config_.beta2),
                                     static_cast<float>(1.0 - config_.beta2), static_cast<float>(lr / bc1),
                                     static_cast<float>(std::sqrt(bc2)), static_cast<float>(config_.eps)};
    // Element-wise and independent: the same result for any thread count; one launch on the GPU.
    sweep_.run(detail::AdamWRange{update}, 8);
    return norm;
  }

  /// Calls f(std::string_view name, std::span<float> values) for each state tensor:
  /// "<param>.exp_avg", then "<param>.exp_avg_sq", per parameter in model order. While the
  /// GPU is the device the moments live there and the spans are their host copies
  /// (update_host before reading, update_device after writing).
  template <class F>
  void for_each_state(F&& f) {
    for (Slot& s : slots_) {
      const std::string m = s.name + ".exp_avg", v = s.name + ".exp_avg_sq";
      f(std::string_view(m), std::span<float>(s.exp_avg.data(), s.exp_avg.size()));
      f(std::string_view(v), std::span<float>(s.exp_avg_sq.data(), s.exp_avg_sq.size()));
    }
  }

 private:
  using Buffer = diffuse::detail::AlignedBuffer<float>;  // with a device copy on the GPU
  struct Slot {
    std::string name;
    Buffer exp_avg, exp_avg_sq;
  };

  // Fills sweep_ with the parameters, their gradients and moments; throws unless the
  // model's parameters are, in order, the ones the state was made for.
  template <class Model>
  void fill_sweep(Model& model) {
    sweep_.clear();
    std::size_t k = 0;
    model.for_each_param([&](std::string_view name, std::span<float> value, std::span<float> grad) {
      if (k >= slots_.size() || slots_[k].name != name || slots_[k].exp_avg.size() != value.size() ||
          grad.size() != value.size())
        throw std::invalid_argument("diffuse::optim::AdamW: parameter " + std::to_string(k) + " (" +
                                    std::string(name) + ") does not match the optimiser state");
      Slot& s = slots_[k++];
      sweep_.add(value.size(), {value.data(), grad.data(), s.exp_avg.data(), s.exp_avg_sq.data()});
    });
    if (k != slots_.size())
      throw std::invalid_argument("diffuse::optim::AdamW: the model has " + std::to_string(k) +
                                  " parameters, the optimiser state " + std::to_string(slots_.size()));
  }

  AdamWConfig config_;
  std::uint64_t step_ = 0;
  std::vector<Slot> slots_;
  detail::ParamSweep<4> sweep_;  // refilled each step (fill_sweep): no allocation after the first
};

}  // namespace diffuse::optim
