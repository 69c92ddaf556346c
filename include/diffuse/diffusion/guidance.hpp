// Classifier-free guidance (Ho & Salimans 2022) for a class-conditional model: a
// denoiser for the samplers that mixes the model's conditional and unconditional
// estimates,
//
//   D_w(x; sigma, k) = D(x; sigma, -1) + w (D(x; sigma, k) - D(x; sigma, -1)),
//
// where label -1 is "no label" (the model learns it from the labels dropped in training).
// w = 1 is the plain conditional denoiser, w = 0 the unconditional one, w > 1 pushes the
// images further towards their class (k-diffusion's and diffusers' convention).
//
// The two estimates come from one forward pass over a batch of 2N images (conditional,
// then unconditional), which keeps the GEMMs large. Images without a label (-1) need no
// guidance; a batch of those, or w = 1, costs one pass of N.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/core/error.hpp"
#include "diffuse/core/ops.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/nn/labels.hpp"

namespace diffuse::diffusion {

/// The guided denoiser around `model` (a Precond) for a batch whose image i has class
/// labels[i] (-1: unconditional), guidance scale w. With every label -1 (the only choice
/// for a model without classes) it is the model's own denoiser.
template <class Model>
class Guided {
 public:
  using Batch = typename Model::Batch;  ///< (N, H, W, C)
  using T = typename Model::T;  ///< the model's element type

  /// Guides `model` (kept by reference) with one label per image and scale w. Throws
  /// std::invalid_argument for a label outside [-1, classes) or a non-finite scale.
  Guided(Model& model, std::vector<int> labels, double scale)
      : model_(model), labels_(std::move(labels)), scale_(scale) {
    nn::check_labels(labels_, Model::classes, "diffuse::diffusion::Guided");
    if (!std::isfinite(scale_))
      throw std::invalid_argument("diffuse::diffusion::Guided: the guidance scale must be finite");
    const bool any_label = std::any_of(labels_.begin(), labels_.end(), [](int k) { return k >= 0; });
    both_ = any_label && scale_ != 1.0;
    if (both_) {
      both_labels_ = labels_;
      both_labels_.resize(2 * labels_.size(), nn::no_label);
      for (int k : labels_) guided_.push_back(k < 0 ? T(0) : T(1));
    }
  }

  std::span<const int> labels() const noexcept { return labels_; }  ///< One label per image (-1: unconditional).
  /// Network evaluations per image and call: 2 when guiding, else 1.
  std::size_t network_passes() const noexcept { return both_ ? 2 : 1; }
  double scale() const noexcept { return scale_; }  ///< The guidance scale w.

  /// out = D_w(x; sigma, labels) for the batch.
  void operator()(TensorView<const T, Batch> x, T sigma, TensorView<T, Batch> out) {
    one_sigma_.assign(x.batch(), sigma);
    (*this)(x, std::span<const T>(one_sigma_), out);
  }

  /// out = D_w(x; sigma_i, labels) with one sigma per image (DpmAdaptive): x, out (N, H, W,
  /// C), sigma [N]; ShapeError when the batch, the labels or the sigmas differ in number.
  void operator()(TensorView<const T, Batch> x, std::span<const T> sigma, TensorView<T, Batch> out) {
    const std::size_t n = x.batch();
    if (n != labels_.size())
      throw ShapeError("diffuse::diffusion::Guided: batch of " + std::to_string(n) + " images for " +
                       std::to_string(labels_.size()) + " labels");
    if (sigma.size() != n)
      throw ShapeError("diffuse::diffusion::Guided: " + std::to_string(sigma.size()) + " sigmas for " +
                       std::to_string(n) + " images");
    if (!both_) {
      model_.forward(x, sigma, std::span<const int>(labels_), out);
      return;
    }
    x2_.resize(2 * n);
    d2_.resize(2 * n);
    x2_.items(0, n) = x;
    x2_.items(n, n) = x;
    sigma_.assign(sigma.begin(), sigma.end());
    sigma_.insert(sigma_.end(), sigma.begin(), sigma.end());
    model_.forward(TensorView<const T, Batch>(x2_.view()), std::span<const T>(sigma_),
                   std::span<const int>(both_labels_), d2_.view());
    // out = uncond + w (cond - uncond); an image without a label keeps its conditional
    // estimate (which is its unconditional one) exactly.
    const auto cond = d2_.items(0, n), uncond = d2_.items(n, n);
    const T w = static_cast<T>(scale_);
    out = where(per_item<Batch>(guided_) > T(0), uncond + w * (cond - uncond), cond);
  }

 private:
  Model& model_;
  std::vector<int> labels_, both_labels_;
  double scale_;
  bool both_ = false;
  Tensor<T, Batch> x2_, d2_;
  std::vector<T> sigma_, one_sigma_;
  std::vector<T> guided_;  // per image: 1 when it has a label, else 0
};

}  // namespace diffuse::diffusion
