// Where training images come from: the ImageSource interface and an in-memory set.
//
// A source is a fixed, indexable collection: `size()` images of shape (H, W, C), image
// i copied out by `load(i, out)`, and optionally a class label per image. The trainer
// decides the order (a deterministic shuffle per epoch), so a source needs no state.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/core/tensor.hpp"
#include "diffuse/nn/labels.hpp"

namespace diffuse::train {

/// A fixed collection of images of shape Batch = Shape<dyn, H, W, C>.
template <class S>
concept ImageSource = requires(const S& s, std::size_t i,
                               TensorView<float, drop_axes<typename S::Batch, 0>> out) {
  typename S::Batch;
  { s.size() } -> std::convertible_to<std::size_t>;
  s.load(i, out);            // image i, pixels in [-1, 1]
  { s.label(i) } -> std::convertible_to<int>;  // its class, or -1 without labels
};

/// Images held in memory (e.g. a whole IDX file), with optional labels.
template <std::size_t H, std::size_t W, std::size_t C>
class TensorImages {
 public:
  using Batch = Shape<dyn, H, W, C>;  ///< (N, H, W, C)

  /// Takes the images (pixels in [-1, 1]) and optionally one label per image. Throws
  /// std::invalid_argument when labels are given and their count differs from the images'.
  explicit TensorImages(Tensor<float, Batch> images, std::vector<int> labels = {})
      : images_(std::move(images)), labels_(std::move(labels)) {
    if (!labels_.empty() && labels_.size() != images_.batch())
      throw std::invalid_argument("diffuse::train::TensorImages: " + std::to_string(images_.batch()) +
                                  " images but " + std::to_string(labels_.size()) + " labels");
  }

  std::size_t size() const noexcept { return images_.batch(); }  ///< Number of images.
  /// Copies image i (i < size(), not checked) to out.
  void load(std::size_t i, TensorView<float, Shape<H, W, C>> out) const {
    std::memcpy(out.data(), images_.data() + i * Batch::item_size, Batch::item_size * sizeof(float));
  }
  /// The class of image i, nn::no_label (-1) without labels.
  int label(std::size_t i) const noexcept { return labels_.empty() ? nn::no_label : labels_[i]; }
  const Tensor<float, Batch>& images() const noexcept { return images_; }  ///< All images, (N, H, W, C).

 private:
  Tensor<float, Batch> images_;
  std::vector<int> labels_;
};

}  // namespace diffuse::train
