// Exponential moving average of a model's weights, for sampling with the averaged model.
//
//   ema <- beta ema + (1 - beta) p          (EDM: p_ema = p.lerp(p_ema, beta))
//
// beta is either fixed (e.g. 0.9999) or EDM's half-life form (EmaHalfLife): the average
// halves its memory every `half_life_images` training images,
//   beta = 0.5 ^ (batch / max(half_life, 1e-8)),  half_life = min(half_life_images, images_seen * rampup_ratio)
// where the ramp-up (EDM's ema_rampup_ratio, 0 for none) shortens the half-life early
// in training so that the average forgets the random initialisation. Arithmetic is float
// per element. The averaged weights are exposed by name for checkpoints.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/optim/param_sweep.hpp"
#include "diffuse/optim/params.hpp"

namespace diffuse::optim {

/// EDM's EMA decay from a half-life in images, with optional ramp-up.
struct EmaHalfLife {
  double half_life_images = 500'000.0;  ///< EDM: ema_halflife_kimg = 500
  double rampup_ratio = 0.05;           ///< EDM: ema_rampup_ratio; 0: no ramp-up

  /// beta for an update after a batch of `batch` images, `images_seen` images before it.
  double beta(double images_seen, double batch) const {
    double h = half_life_images;
    if (rampup_ratio > 0.0) h = std::min(h, images_seen * rampup_ratio);
    return std::pow(0.5, batch / std::max(h, 1e-8));
  }
};

namespace detail {

// The passes over (weights p, average e) pairs: e = p + b (e - p); exchanging p and e;
// copying the second array into the first.
struct EmaUpdate {
  float b;
  void operator()(float* const* a, std::int64_t begin, std::int64_t end, std::int64_t) const {
    const float* p = a[0];
    float* e = a[1];
    for (std::int64_t i = begin; i < end; ++i) e[i] = p[i] + b * (e[i] - p[i]);
  }
};
struct EmaSwap {
  void operator()(float* const* a, std::int64_t begin, std::int64_t end, std::int64_t) const {
    float *p = a[0], *e = a[1];
    for (std::int64_t i = begin; i < end; ++i) {
      const float t = p[i];
      p[i] = e[i];
      e[i] = t;
    }
  }
};
struct CopySecondToFirst {
  void operator()(float* const* a, std::int64_t begin, std::int64_t end, std::int64_t) const {
    float* d = a[0];
    const float* s = a[1];
    for (std::int64_t i = begin; i < end; ++i) d[i] = s[i];
  }
};

}  // namespace detail

/// The averaged weights of a model (one float per parameter element). While the GPU is
/// the device, they live there with the weights; the spans of for_each_param are then
/// the host copies (update_host / update_device).
class Ema {
 public:
  Ema() = default;
  /// Starts the average at the model's current weights.
  template <Parameterised Model>
  explicit Ema(Model& model) {
    reset(model);
  }

  /// Restarts the average at the model's current weights.
  template <Parameterised Model>
  void reset(Model& model) {
    slots_.clear();
    model.for_each_param([&](std::string_view name, std::span<float> p, std::span<float>) {
      slots_.push_back({std::string(name), Buffer(p.size())});
    });
    pairs(model, true).run(detail::CopySecondToFirst{});
  }

  /// ema <- beta ema + (1 - beta) p, i.e. p + beta (ema - p).
  template <Parameterised Model>
  void update(Model& model, double beta) {
    pairs(model).run(detail::EmaUpdate{static_cast<float>(beta)});
  }

  /// EDM's update: beta from the half-life for a batch after `images_seen` images.
  template <Parameterised Model>
  void update(Model& model, const EmaHalfLife& schedule, double images_seen, double batch) {
    update(model, schedule.beta(images_seen, batch));
  }

  /// Writes the averaged weights into a model of the same structure (e.g. a second
  /// network used for sampling).
  template <Parameterised Model>
  void copy_to(Model& model) {
    pairs(model).run(detail::CopySecondToFirst{});
  }

  /// Exchanges the model's weights and the averaged ones: swap, sample, swap back.
  template <Parameterised Model>
  void swap_with(Model& model) {
    pairs(model).run(detail::EmaSwap{});
  }

  /// Calls f(std::string_view name, std::span<float> values) per averaged parameter.
  template <class F>
  void for_each_param(F&& f) {
    for (Slot& s : slots_) f(std::string_view(s.name), std::span<float>(s.value.data(), s.value.size()));
  }

 private:
  using Buffer = diffuse::detail::AlignedBuffer<float>;  // with a device copy on the GPU
  struct Slot {
    std::string name;
    Buffer value;
  };

  // The pass over (weights, average) pairs, or (average, weights) when `average_first`;
  // throws unless the model's parameters are the ones averaged.
  template <class Model>
  detail::ParamSweep<2>& pairs(Model& model, bool average_first = false) {
    sweep_.clear();
    std::size_t k = 0;
    model.for_each_param([&](std::string_view name, std::span<float> p, std::span<float>) {
      if (k >= slots_.size() || slots_[k].name != name || slots_[k].value.size() != p.size())
        throw std::invalid_argument("diffuse::optim::Ema: parameter " + std::string(name) +
                                    " does not match the averaged weights");
      float* e = slots_[k++].value.data();
      sweep_.add(p.size(), average_first ? std::array<float*, 2>{e, p.data()} : std::array<float*, 2>{p.data(), e});
    });
    if (k != slots_.size()) throw std::invalid_argument("diffuse::optim::Ema: the model has fewer parameters");
    return sweep_;
  }

  std::vector<Slot> slots_;
  detail::ParamSweep<2> sweep_;  // refilled for each pass: no allocation after the first
};

/// While alive, `model` holds the averaged weights of `ema` (what sampling and exported
/// weights use); the training weights come back when it goes out of scope, also when an
/// exception leaves the scope.
///
///   { optim::EmaApplied ema_weights(trainer.ema(), model); sampler.sample(model, x, seed); }
template <Parameterised Model>
class [[nodiscard]] EmaApplied {
 public:
  /// Swaps the averaged weights of `ema` into `model`.
  EmaApplied(Ema& ema, Model& model) : ema_(ema), model_(model) { ema_.swap_with(model_); }
  ~EmaApplied() { ema_.swap_with(model_); }
  EmaApplied(const EmaApplied&) = delete;
  EmaApplied& operator=(const EmaApplied&) = delete;

 private:
  Ema& ema_;
  Model& model_;
};

}  // namespace diffuse::optim
