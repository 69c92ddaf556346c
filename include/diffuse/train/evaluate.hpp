// A deterministic measure of a model: the training loss (EDM's by default) on held-out images at a fixed grid
// of noise levels, with fixed noise. Two trainings (or two checkpoints of one) are then
// compared by one number that does not move with the random draws of the training loss.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "diffuse/core/random.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/diffusion/loss.hpp"
#include "diffuse/diffusion/precond.hpp"
#include "diffuse/nn/labels.hpp"
#include "diffuse/train/image_source.hpp"

namespace diffuse::train {

/// Settings of evaluate_loss_per_sigma: the noise levels, the batch and the fixed noise.
struct EvalConfig {
  std::vector<double> sigmas = default_sigmas();  ///< noise levels, each used for every image
  std::size_t batch = 64;  ///< images per forward pass
  std::uint64_t seed = 12345;  ///< noise of image i at level k: Generator(seed, i, k)

  /// Nine levels, log-spaced from 0.01 to 10 around EDM's training distribution
  /// (ln sigma ~ N(-1.2, 1.2^2)).
  static std::vector<double> default_sigmas() {
    std::vector<double> s;
    for (int k = 0; k < 9; ++k) s.push_back(0.01 * std::pow(10.0, 3.0 * k / 8.0));
    return s;
  }
};

/// Mean per-image loss (lambda(sigma) ||D(y + sigma n; sigma) - y||^2, lambda the weight of
/// `loss_fn`, e.g. diffusion::EDMLoss) over the images of `data` and the noise levels of
/// `cfg`; one entry per level, in order. A class-conditional model denoises each image
/// given its label (-1, no label, where it has none).
template <class Model, ImageSource Source, diffusion::TrainingLoss Loss>
std::vector<double> evaluate_loss_per_sigma(Model& model, const Source& data, const EvalConfig& cfg, const Loss& loss_fn) {
  using Batch = typename Model::Batch;
  const std::size_t n = data.size();
  std::vector<double> result(cfg.sigmas.size(), 0.0);
  if (n == 0) return result;
  const std::size_t b = std::min(cfg.batch, n);
  Tensor<float, Batch> y(b), noise(b);
  std::vector<float> sigma(b);
  std::vector<int> labels(b, nn::no_label);
  constexpr bool conditional = nn::classes_v<Model> > 0;
  if constexpr (conditional) {  // up front, so that an error names the image's index in `data`
    std::vector<int> all(n);
    for (std::size_t i = 0; i < n; ++i) all[i] = data.label(i);
    nn::check_labels(all, nn::classes_v<Model>, "diffuse::train::evaluate_loss");
  }
  for (std::size_t k = 0; k < cfg.sigmas.size(); ++k) {
    double total = 0.0;
    for (std::size_t first = 0; first < n; first += b) {
      const std::size_t m = std::min(b, n - first);
      auto yv = y.items(0, m);
      auto nv = noise.items(0, m);
      for (std::size_t i = 0; i < m; ++i) {
        data.load(first + i, yv.item(i));
        Generator g(cfg.seed, first + i, k);
        fill_normal(nv.item(i), g);
        sigma[i] = static_cast<float>(cfg.sigmas[k]);
        labels[i] = data.label(first + i);
      }
      update_device(y);  // loaded and drawn on the host: to the GPU while that is the device
      update_device(noise);
      const TensorView<const float, Batch> y_in(yv), n_in(nv);
      const std::span<const float> s_in(sigma.data(), m);
      if constexpr (conditional) model.loss(loss_fn, y_in, s_in, n_in, std::span<const int>(labels.data(), m));
      else model.loss(loss_fn, y_in, s_in, n_in);
      for (float l : model.loss_per_image()) total += l;
    }
    result[k] = total / static_cast<double>(n);
  }
  return result;
}

/// evaluate_loss_per_sigma with the loss EDM pairs with the model's preconditioning
/// (diffusion::default_loss; for EDM, EDMLoss's weighting).
template <class Model, ImageSource Source>
std::vector<double> evaluate_loss_per_sigma(Model& model, const Source& data, const EvalConfig& cfg = {}) {
  return evaluate_loss_per_sigma(model, data, cfg, diffusion::default_loss(model.policy()));
}

/// The mean of evaluate_loss_per_sigma over the levels: one number per model.
template <class Model, ImageSource Source, diffusion::TrainingLoss Loss>
double evaluate_loss(Model& model, const Source& data, const EvalConfig& cfg, const Loss& loss_fn) {
  const auto per = evaluate_loss_per_sigma(model, data, cfg, loss_fn);
  double s = 0.0;
  for (double v : per) s += v;
  return per.empty() ? 0.0 : s / static_cast<double>(per.size());
}

/// evaluate_loss with diffusion::default_loss of the model's preconditioning.
template <class Model, ImageSource Source>
double evaluate_loss(Model& model, const Source& data, const EvalConfig& cfg = {}) {
  return evaluate_loss(model, data, cfg, diffusion::default_loss(model.policy()));
}

}  // namespace diffuse::train
