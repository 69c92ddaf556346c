// The feature network of diffuse's Fréchet distance: a small convolutional classifier
// trained by diffuse on a labelled data set (Fashion-MNIST, a folder of class folders),
// whose pooled last-layer activations (feature_dim values per image) play the part
// Inception's pool3 features play in FID.
//
//   conv0 3x3 C->32, GroupNorm+SiLU        (H, W)
//   conv1 3x3/2 32->64, GroupNorm+SiLU     (H/2, W/2)
//   conv2 3x3/2 64->128, GroupNorm+SiLU    (H/4, W/4)
//   conv3 3x3 128->128, GroupNorm+SiLU     (H/4, W/4)
//   mean over pixels -> features (128)  -> head Linear(128, Classes) -> logits
//
// Trained with AdamW on the softmax cross-entropy (nn/cross_entropy.hpp). Its weights are
// saved as safetensors with PyTorch names (norm0.weight, conv0.weight, ...) and metadata
// that say what it is (image shape, classes, test accuracy), so that a distance is only
// computed with the network it was meant for.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "diffuse/io/safetensors.hpp"
#include "diffuse/metrics/frechet.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/cross_entropy.hpp"
#include "diffuse/nn/group_norm.hpp"
#include "diffuse/nn/linear.hpp"
#include "diffuse/nn/pool.hpp"
#include "diffuse/nn/state_dict.hpp"
#include "diffuse/optim/adamw.hpp"

namespace diffuse::metrics {

/// Values per image of the classifier's features.
inline constexpr std::size_t feature_dim = 128;

/// The classifier for images (H, W, C) and `Classes` classes (see the file-top comment),
/// of element type T (float; double for gradient checks). Its buffers follow the batch of
/// the last forward; one object serves one thread.
template <std::size_t H, std::size_t W, std::size_t C, std::size_t Classes, class T = float>
class Classifier {
 public:
  using value_type = T;  ///< The element type.
  using Batch = Shape<dyn, H, W, C>;  ///< (N, H, W, C): images, pixels in [-1, 1]
  using Features = Shape<dyn, feature_dim>;  ///< (N, feature_dim)
  using Logits = Shape<dyn, Classes>;  ///< (N, Classes)
  static constexpr std::size_t classes = Classes;  ///< Number of classes.

  using Conv0 = nn::Conv3x3<T, C, 32, H, W>;  ///< (H, W): C -> 32
  using Norm0 = nn::GroupNormSiLU<T, H, W, 32, 8>;  ///< GroupNorm (8 groups) + SiLU
  using Conv1 = nn::Conv2d<T, 32, 64, 3, H, W, 2, 1>;  ///< stride 2: 32 -> 64
  static constexpr std::size_t H1 = Conv1::OH;  ///< Height after conv1.
  static constexpr std::size_t W1 = Conv1::OW;  ///< Width after conv1.
  using Norm1 = nn::GroupNormSiLU<T, H1, W1, 64, 8>;  ///< GroupNorm (8 groups) + SiLU
  using Conv2 = nn::Conv2d<T, 64, 128, 3, H1, W1, 2, 1>;  ///< stride 2: 64 -> 128
  static constexpr std::size_t H2 = Conv2::OH;  ///< Height after conv2.
  static constexpr std::size_t W2 = Conv2::OW;  ///< Width after conv2.
  using Norm2 = nn::GroupNormSiLU<T, H2, W2, 128, 8>;  ///< GroupNorm (8 groups) + SiLU
  using Conv3 = nn::Conv3x3<T, 128, feature_dim, H2, W2>;  ///< 128 -> feature_dim
  using Norm3 = nn::GroupNormSiLU<T, H2, W2, feature_dim, 8>;  ///< GroupNorm (8 groups) + SiLU
  using Pool = nn::GlobalAvgPool<T, H2, W2, feature_dim>;  ///< mean over the pixels
  using Head = nn::Linear<T, feature_dim, Classes>;  ///< features -> logits

  /// PyTorch's default initialisation from `g`, in state_dict order.
  void init(Generator& g) {
    conv0.init(g);
    norm0.init();
    conv1.init(g);
    norm1.init();
    conv2.init(g);
    norm2.init();
    conv3.init(g);
    norm3.init();
    head.init(g);
  }

  /// Runs the network on `x`; features() and logits() then hold its results.
  void forward(TensorView<const T, Batch> x /*(N,H,W,C)*/) {
    const std::size_t n = x.batch();
    resize(n);
    conv0.forward(x, h0_);
    norm0.forward(h0_, a0_);
    conv1.forward(a0_, h1_);
    norm1.forward(h1_, a1_);
    conv2.forward(a1_, h2_);
    norm2.forward(h2_, a2_);
    conv3.forward(a2_, h3_);
    norm3.forward(h3_, a3_);
    Pool::forward(a3_, features_);
    head.forward(features_, logits_);
  }

  /// The features of the last forward: (N, feature_dim).
  TensorView<const T, Features> features() const { return features_.view(); }
  /// The class scores of the last forward: (N, Classes).
  TensorView<const T, Logits> logits() const { return logits_.view(); }

  /// Accumulates the parameter gradients (+=) of the last forward(x) given dL/dlogits.
  void backward(TensorView<const T, Batch> x /*(N,H,W,C)*/, TensorView<const T, Logits> dlogits /*(N,Classes)*/) {
    const std::size_t n = x.batch();
    nn::check_batch(n, dlogits.batch(), "Classifier::backward");
    nn::check_batch(n, logits_.batch(), "Classifier::backward");
    head.backward(features_, dlogits, df_);
    Pool::backward(df_, da3_);
    norm3.backward(h3_, da3_, da3_, T(0), ws_.data());
    conv3.backward(a2_, da3_, da2_);
    norm2.backward(h2_, da2_, da2_, T(0), ws_.data());
    conv2.backward(a1_, da2_, da1_);
    norm1.backward(h1_, da1_, da1_, T(0), ws_.data());
    conv1.backward(a0_, da1_, da0_);
    norm0.backward(h0_, da0_, da0_, T(0), ws_.data());
    conv0.backward_params(x, da0_);
  }

  /// Calls f(ParamRef) for every parameter, in state_dict order.
  template <class F>
  void visit_params(F& f, nn::ParamName& name) {
    nn::detail::visit_child(f, name, "conv0", conv0);
    nn::detail::visit_child(f, name, "norm0", norm0);
    nn::detail::visit_child(f, name, "conv1", conv1);
    nn::detail::visit_child(f, name, "norm1", norm1);
    nn::detail::visit_child(f, name, "conv2", conv2);
    nn::detail::visit_child(f, name, "norm2", norm2);
    nn::detail::visit_child(f, name, "conv3", conv3);
    nn::detail::visit_child(f, name, "norm3", norm3);
    nn::detail::visit_child(f, name, "head", head);
  }
  /// f(std::string_view name, std::span<T> value, std::span<T> grad) for every parameter.
  template <class F>
  void for_each_param(F&& f) { nn::for_each_param_of(*this, f); }
  /// f(const ParamRef<T>&) for every parameter (state dicts).
  template <class F>
  void for_each_param_ref(F&& f) {
    nn::ParamName name;
    visit_params(f, name);
  }
  /// Sets every parameter gradient to zero.
  void zero_grad() { nn::zero_grad_of(*this); }

  Conv0 conv0;  ///< PyTorch name "conv0"
  Norm0 norm0;  ///< PyTorch name "norm0"
  Conv1 conv1;  ///< PyTorch name "conv1"
  Norm1 norm1;  ///< PyTorch name "norm1"
  Conv2 conv2;  ///< PyTorch name "conv2"
  Norm2 norm2;  ///< PyTorch name "norm2"
  Conv3 conv3;  ///< PyTorch name "conv3"
  Norm3 norm3;  ///< PyTorch name "norm3"
  Head head;    ///< PyTorch name "head"

 private:
  void resize(std::size_t n) {
    if (h0_.batch() == n) return;
    h0_.resize(n), a0_.resize(n), da0_.resize(n);
    h1_.resize(n), a1_.resize(n), da1_.resize(n);
    h2_.resize(n), a2_.resize(n), da2_.resize(n);
    h3_.resize(n), a3_.resize(n), da3_.resize(n);
    features_.resize(n), df_.resize(n), logits_.resize(n);
    ws_.assign(n * std::max({H * W * 32, H1 * W1 * 64, H2 * W2 * 128, H2 * W2 * feature_dim}), T(0));
  }

  using A0 = Shape<dyn, H, W, 32>;
  using A1 = Shape<dyn, H1, W1, 64>;
  using A2 = Shape<dyn, H2, W2, 128>;
  using A3 = Shape<dyn, H2, W2, feature_dim>;
  Tensor<T, A0> h0_, a0_, da0_;  // conv0's output, after GroupNorm + SiLU, its gradient
  Tensor<T, A1> h1_, a1_, da1_;
  Tensor<T, A2> h2_, a2_, da2_;
  Tensor<T, A3> h3_, a3_, da3_;
  Tensor<T, Features> features_, df_;
  Tensor<T, Logits> logits_;
  std::vector<T> ws_;  // GroupNorm backward's scratch
};

/// How train_classifier trains.
struct ClassifierTraining {
  std::size_t epochs = 3;     ///< passes over the data
  std::size_t batch = 128;    ///< images per step
  double lr = 2e-3;           ///< AdamW learning rate (after a linear warm-up over the first 5 % of the steps)
  std::uint64_t seed = 0;     ///< initialisation and shuffle
};

/// Trains `net` from its initialisation by `options.seed` on `images` (N, H, W, C) and
/// their `labels` (N values in [0, Classes)). After each epoch calls progress(epoch,
/// mean loss of the epoch) when given. Deterministic for a seed and thread count. Throws
/// std::invalid_argument when the counts differ, a label is out of range or the options are 0.
template <std::size_t H, std::size_t W, std::size_t C, std::size_t K>
void train_classifier(Classifier<H, W, C, K>& net, std::type_identity_t<TensorView<const float, Shape<dyn, H, W, C>>> images,
                      std::span<const int> labels, const ClassifierTraining& options = {},
                      const std::function<void(std::size_t, double)>& progress = {}) {
  const std::size_t n = images.batch();
  if (labels.size() != n)
    throw std::invalid_argument("diffuse::metrics::train_classifier: " + std::to_string(labels.size()) +
                                " labels for " + std::to_string(n) + " images");
  if (n == 0 || options.epochs == 0 || options.batch == 0)
    throw std::invalid_argument("diffuse::metrics::train_classifier: no images, epochs or batch");
  for (int y : labels)
    if (y < 0 || std::size_t(y) >= K)
      throw std::invalid_argument("diffuse::metrics::train_classifier: label " + std::to_string(y) +
                                  " is not a class of 0.." + std::to_string(K - 1));
  Generator init_rng(options.seed);
  net.init(init_rng);
  constexpr std::size_t item = H * W * C;
  const std::size_t b = std::min(options.batch, n);
  optim::AdamW opt({.lr = options.lr, .weight_decay = 1e-4, .warmup_steps = options.epochs * (n / b) / 20});
  Tensor<float, Shape<dyn, H, W, C>> x(b);
  Tensor<float, Shape<dyn, K>> dlogits(b);
  std::vector<int> y(b);
  std::vector<std::size_t> order;
  for (std::size_t epoch = 0; epoch < options.epochs; ++epoch) {
    Generator g(options.seed, (std::uint64_t{1} << 62) | epoch);  // the trainer's shuffle stream
    shuffle_indices(order, n, g);
    double loss_sum = 0.0;
    std::size_t steps = 0;
    for (std::size_t start = 0; start + b <= n; start += b, ++steps) {  // whole batches only
      for (std::size_t j = 0; j < b; ++j) {
        std::copy_n(images.data() + order[start + j] * item, item, x.data() + j * item);
        y[j] = labels[order[start + j]];
      }
      net.forward(x.view());
      loss_sum += nn::softmax_cross_entropy<float, K>(net.logits(), y, dlogits.data());
      net.backward(x.view(), dlogits.view());
      opt.step(net);
      net.zero_grad();
    }
    if (progress) progress(epoch, loss_sum / double(std::max<std::size_t>(steps, 1)));
  }
}

/// Calls f(first image index, TensorView of up to `batch` images) over `images` in order.
template <class S, class F>
void for_each_batch(TensorView<const float, S> images, std::size_t batch, F&& f) {
  for (std::size_t start = 0; start < images.batch(); start += batch)
    f(start, images.items(start, std::min(batch, images.batch() - start)));
}

/// The share of `images` whose most likely class under `net` is their label.
template <std::size_t H, std::size_t W, std::size_t C, std::size_t K>
double accuracy(Classifier<H, W, C, K>& net, std::type_identity_t<TensorView<const float, Shape<dyn, H, W, C>>> images,
                std::span<const int> labels, std::size_t batch = 256) {
  if (labels.size() != images.batch())
    throw std::invalid_argument("diffuse::metrics::accuracy: " + std::to_string(labels.size()) + " labels for " +
                                std::to_string(images.batch()) + " images");
  std::size_t right = 0;
  for_each_batch(images, batch, [&](std::size_t start, auto x) {
    net.forward(x);
    for (std::size_t i = 0; i < x.batch(); ++i) {
      const float* z = net.logits().data() + i * K;
      right += int(std::max_element(z, z + K) - z) == labels[start + i];
    }
  });
  return images.batch() ? double(right) / double(images.batch()) : 0.0;
}

/// The mean and covariance of the features of `images` under `net`.
template <std::size_t H, std::size_t W, std::size_t C, std::size_t K>
FeatureStats feature_stats(Classifier<H, W, C, K>& net, std::type_identity_t<TensorView<const float, Shape<dyn, H, W, C>>> images,
                           std::size_t batch = 256) {
  FeatureStats s(feature_dim);
  for_each_batch(images, batch, [&](std::size_t, auto x) {
    net.forward(x);
    s.add(std::span<const float>(net.features().data(), x.batch() * feature_dim));
  });
  return s;
}

/// Metadata keys of a saved classifier.
namespace classifier_keys {
inline constexpr const char* format = "diffuse.format";  ///< "diffuse-classifier-1"
inline constexpr const char* shape = "diffuse.image_shape";  ///< "HxWxC"
inline constexpr const char* classes = "diffuse.classes";  ///< number of classes
}  // namespace classifier_keys
/// The format tag of a saved classifier.
inline constexpr const char* classifier_format = "diffuse-classifier-1";

/// Writes `net`'s weights (PyTorch names) and metadata (the keys above plus `extra`, e.g.
/// the test accuracy and the data it was trained on) to `path`. Throws
/// io::SafetensorsError when the file cannot be written.
template <std::size_t H, std::size_t W, std::size_t C, std::size_t K>
void save_classifier(Classifier<H, W, C, K>& net, const std::string& path,
                     const std::map<std::string, std::string>& extra = {}) {
  io::SafetensorsWriter w;
  nn::write_state_dict(w, net);
  for (const auto& [k, v] : extra) w.set_metadata(k, v);
  w.set_metadata(classifier_keys::format, classifier_format);
  w.set_metadata(classifier_keys::shape, std::to_string(H) + "x" + std::to_string(W) + "x" + std::to_string(C));
  w.set_metadata(classifier_keys::classes, std::to_string(K));
  w.write(path);
}

/// Loads weights that save_classifier wrote for this image shape and class count. Throws
/// io::SafetensorsError naming the file when it is not such a classifier (another format,
/// image shape or class count, or a tensor missing or of another shape).
template <std::size_t H, std::size_t W, std::size_t C, std::size_t K>
void load_classifier(Classifier<H, W, C, K>& net, const io::SafetensorsFile& file) {
  const auto& m = file.metadata();
  auto get = [&](const char* key) {
    auto it = m.find(key);
    return it == m.end() ? std::string() : it->second;
  };
  if (get(classifier_keys::format) != classifier_format)
    throw io::SafetensorsError(file.path() + ": not a diffuse classifier (metadata " + classifier_keys::format +
                               " is '" + get(classifier_keys::format) + "', expected '" + classifier_format + "')");
  const std::string shape = std::to_string(H) + "x" + std::to_string(W) + "x" + std::to_string(C);
  if (get(classifier_keys::shape) != shape || get(classifier_keys::classes) != std::to_string(K))
    throw io::SafetensorsError(file.path() + ": a classifier of " + get(classifier_keys::shape) + " images and " +
                               get(classifier_keys::classes) + " classes, expected " + shape + " and " +
                               std::to_string(K));
  nn::load_state_dict(net, file);
}

}  // namespace diffuse::metrics
