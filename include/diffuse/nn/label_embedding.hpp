// Class labels for a class-conditional UNet: EDM's "map_label", a bias-free
// Linear(L -> C) applied to sqrt(L) * one_hot(label), added to the sinusoidal noise
// features before the embedding MLP.
//
// Label -1 means "no label" and adds nothing. That is the unconditional model of
// classifier-free guidance (Ho & Salimans 2022): training drops labels to -1 with some
// probability, and sampling mixes D(x; sigma, -1) with D(x; sigma, k). Without a bias,
// "no label" is exactly the zero one-hot vector, as in EDM's label dropout.
//
// The weight is stored [C][L] like torch.nn.Linear(L, C, bias=False).weight.
#pragma once

#include <cmath>
#include <cstddef>
#include <span>

#include "diffuse/core/device.hpp"
#include "diffuse/kernels/offload.hpp"
#include "diffuse/nn/labels.hpp"
#include "diffuse/nn/layer.hpp"

namespace diffuse::nn {

/// emb[n] += sqrt(L) W[:, label[n]] for every image with a label.  emb: (N, C).
template <class T, std::size_t L, std::size_t C>
struct LabelEmbedding {
  static_assert(L > 0, "diffuse::nn::LabelEmbedding: needs at least one class");
  static constexpr std::size_t param_count = C * L;  ///< Number of parameters.

  Param<T, Shape<C, L>> weight;  ///< [C][L], as torch.nn.Linear(L, C, bias=False).weight

  /// PyTorch's default for Linear(L, C): U(-1/sqrt(L), 1/sqrt(L)).
  void init(Generator& g) { init_uniform(weight, g, 1.0 / std::sqrt(static_cast<double>(L))); }

  /// Adds the labels' embeddings to emb. Labels must have been checked (check_labels).
  void forward(std::span<const int> labels /*[N]*/, TensorView<T, Shape<dyn, C>> emb /*(N,C)*/) const {
    check_batch(labels.size(), emb.batch(), "LabelEmbedding::forward");
    const T scale = static_cast<T>(std::sqrt(static_cast<double>(L)));
    const T* w = weight.value.data();
    if (diffuse::detail::on_device()) {  // emb, w and the labels (copied) on the device
      diffuse::detail::DeviceStaging staging;
      kernels::device::label_embedding_add<T>(diffuse::detail::device_address(w), staging(labels.data(), labels.size()),
                                              diffuse::detail::device_address(emb.data()), labels.size(), C, L, scale);
      return;
    }
    for (std::size_t n = 0; n < labels.size(); ++n) {
      if (labels[n] < 0) continue;
      T* e = emb.data() + n * C;
      for (std::size_t c = 0; c < C; ++c) e[c] += scale * w[c * L + static_cast<std::size_t>(labels[n])];
    }
  }

  /// weight.grad[:, label[n]] += sqrt(L) demb[n].
  void backward(std::span<const int> labels /*[N]*/, TensorView<const T, Shape<dyn, C>> demb /*(N,C)*/) {
    check_batch(labels.size(), demb.batch(), "LabelEmbedding::backward");
    const T scale = static_cast<T>(std::sqrt(static_cast<double>(L)));
    T* g = weight.grad.data();
    if (diffuse::detail::on_device()) {
      diffuse::detail::DeviceStaging staging;
      kernels::device::label_embedding_grad<T>(diffuse::detail::device_address(demb.data()),
                                               staging(labels.data(), labels.size()),
                                               diffuse::detail::device_address(g), labels.size(), C, L, scale);
      return;
    }
    for (std::size_t n = 0; n < labels.size(); ++n) {
      if (labels[n] < 0) continue;
      const T* d = demb.data() + n * C;
      for (std::size_t c = 0; c < C; ++c) g[c * L + static_cast<std::size_t>(labels[n])] += scale * d[c];
    }
  }

  /// Calls f(ParamRef) for weight.
  template <class F>
  void visit_params(F& f, ParamName& name) {
    detail::visit_param(f, name, "weight", weight);
  }
};

}  // namespace diffuse::nn
