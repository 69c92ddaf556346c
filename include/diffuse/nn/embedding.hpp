// The noise embedding of the UNet: a sinusoidal embedding of c_noise with C channels,
// then the MLP Linear(C -> E), SiLU, Linear(E -> E), SiLU (EDM / DDPM++ "map_layer0/1").
// A class-conditional network (L > 0 classes) adds its label embedding to the sinusoidal
// features before the MLP (EDM's "map_label", label_embedding.hpp).
//
//   freqs_i = (1/10000)^(i / (C/2)), i = 0 .. C/2 - 1
//   emb     = [cos(c_noise * freqs), sin(c_noise * freqs)]        (C channels)
//
// No gradient flows to c_noise (the preconditioning does not need one).
#pragma once

#include <cmath>
#include <span>
#include <type_traits>
#include <vector>

#include "diffuse/nn/label_embedding.hpp"
#include "diffuse/nn/linear.hpp"
#include "diffuse/nn/silu.hpp"

namespace diffuse::nn {

/// out[n] = [cos(c_noise[n] * freqs), sin(c_noise[n] * freqs)].
template <class T, std::size_t C>
void sinusoidal_embedding(std::span<const T> c_noise /*[N]*/, TensorView<T, Shape<dyn, C>> out /*(N,C)*/) {
  static_assert(C % 2 == 0 && C > 0, "diffuse::nn::sinusoidal_embedding: channels must be even");
  check_batch(c_noise.size(), out.batch(), "sinusoidal_embedding");
  constexpr std::size_t half = C / 2;
  for (std::size_t n = 0; n < c_noise.size(); ++n) {
    T* o = out.data() + n * C;
    for (std::size_t i = 0; i < half; ++i) {
      // In double: the argument may be large and float pow/cos lose digits.
      const double freq = std::pow(1.0 / 10000.0, double(i) / double(half));
      const double arg = double(c_noise[n]) * freq;
      o[i] = T(std::cos(arg));
      o[half + i] = T(std::sin(arg));
    }
  }
}

namespace detail {
struct NoLabels {
  static constexpr std::size_t param_count = 0;
};
}  // namespace detail

/// (c_noise, label) (N) -> e (N, E): sinusoidal(C) [+ label embedding], Linear(C, E), SiLU,
/// Linear(E, E), SiLU. L: number of classes, 0 for an unconditional network.
template <class T, std::size_t C, std::size_t E, std::size_t L = 0>
struct NoiseEmbedding {
  using Emb = Shape<dyn, C>;  ///< (N, C): the sinusoidal features
  using Hid = Shape<dyn, E>;  ///< (N, E): the MLP's activations and the embedding
  /// The label embedding (LabelEmbedding) of a class-conditional network; an empty
  /// placeholder when L == 0.
  using Labels = std::conditional_t<(L > 0), LabelEmbedding<T, (L > 0 ? L : 1), C>, detail::NoLabels>;
  /// Number of parameters.
  static constexpr std::size_t param_count =
      Labels::param_count + Linear<T, C, E>::param_count + Linear<T, E, E>::param_count;
  /// Saved per image: emb, h0, a0, h1, out (and the label).
  static constexpr std::size_t activations_per_image = C + 4 * E + (L > 0 ? 1 : 0);
  /// Scratch per image that backward needs (ws argument).
  static constexpr std::size_t workspace_per_image = 2 * E + (L > 0 ? C : 0);

  [[no_unique_address]] Labels map_label;  ///< EDM's map_label (class-conditional networks only).
  Linear<T, C, E> map_layer0;  ///< Linear(C -> E), EDM's map_layer0.
  Linear<T, E, E> map_layer1;  ///< Linear(E -> E), EDM's map_layer1.
  Tensor<T, Emb> emb;   ///< (N, C) sinusoidal
  Tensor<T, Hid> h0;    ///< (N, E) map_layer0 output
  Tensor<T, Hid> a0;    ///< (N, E) silu(h0)
  Tensor<T, Hid> h1;    ///< (N, E) map_layer1 output
  Tensor<T, Hid> out;   ///< (N, E) silu(h1): the embedding every ResBlock reads
  std::vector<int> labels_;  ///< the last forward's labels (empty: none)

  /// PyTorch's default initialisation of every parameter, in state_dict order.
  void init(Generator& g) {
    if constexpr (L > 0) map_label.init(g);
    map_layer0.init(g);
    map_layer1.init(g);
  }

  /// Computes `out` for the batch (allocates only when the batch size changes). labels:
  /// one per image (-1: none), or empty for none at all; checked by the caller.
  void forward(std::span<const T> c_noise /*[N]*/, std::span<const int> labels = {}) {
    const std::size_t n = c_noise.size();
    emb.resize(n);
    h0.resize(n);
    a0.resize(n);
    h1.resize(n);
    out.resize(n);
    sinusoidal_embedding<T, C>(c_noise, emb);
    update_device(emb.data(), emb.size());  // computed on the host (N x C values)
    if constexpr (L > 0) {  // on the device where the weights are
      labels_.assign(labels.begin(), labels.end());  // kept for backward
      if (!labels.empty()) map_label.forward(labels, emb);
    }
    map_layer0.forward(emb, h0);
    SiLU<T, Hid>::forward(h0, a0);
    map_layer1.forward(a0, h1);
    SiLU<T, Hid>::forward(h1, out);
  }

  /// Parameter gradients (+=) given de = dL/d(out). ws: N * workspace_per_image.
  void backward(TensorView<const T, Hid> de /*(N,E)*/, T* ws) {
    const std::size_t n = de.batch();
    TensorView<T, Hid> d1(ws, n), d0(ws + n * E, n);
    SiLU<T, Hid>::backward(h1, de, d1);
    map_layer1.backward(a0, d1, d0);
    SiLU<T, Hid>::backward(h0, d0, d0);
    if constexpr (L > 0) {
      if (!labels_.empty()) {
        TensorView<T, Emb> demb(ws + 2 * n * E, n);
        map_layer0.backward(emb, d0, demb);
        map_label.backward(labels_, demb);
        return;
      }
    }
    map_layer0.backward_params(emb, d0);
  }

  /// Calls f(ParamRef) for [map_label,] map_layer0 and map_layer1, in state_dict order.
  template <class F>
  void visit_params(F& f, ParamName& name) {
    if constexpr (L > 0) detail::visit_child(f, name, "map_label", map_label);
    detail::visit_child(f, name, "map_layer0", map_layer0);
    detail::visit_child(f, name, "map_layer1", map_layer1);
  }
  /// f(name, value, grad) for every parameter, in state_dict order.
  template <class F>
  void for_each_param(F&& f) { for_each_param_of(*this, f); }
};

}  // namespace diffuse::nn
