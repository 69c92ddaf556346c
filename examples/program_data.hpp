// Reading the programs' training images: an IDX file with optional labels, or a folder
// of image files.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <diffuse/io/data_error.hpp>
#include <diffuse/io/idx.hpp>
#include <diffuse/io/image_folder.hpp>
#include <diffuse/train/image_source.hpp>

namespace diffuse::programs {

/// Training images from an IDX file (plain or .gz; optional IDX labels) or a folder of
/// image files (resized to the model's size when `resize`, else rejected).
template <std::size_t H, std::size_t W, std::size_t C>
train::TensorImages<H, W, C> load_images(const std::string& path, const std::string& labels, bool resize) {
  if (std::filesystem::is_directory(path)) {
    if (!labels.empty()) throw std::invalid_argument("--labels goes with an IDX image file, not a folder");
    return train::TensorImages<H, W, C>(io::load_image_folder<H, W, C>(path, resize));
  }
  if constexpr (C != 1) {
    throw io::DataError(path, "IDX files hold grey images, but the model takes " + std::to_string(C) + " channels");
  } else {
    auto images = io::load_idx_images<H, W>(path);
    std::vector<int> l;
    if (!labels.empty()) {
      l = io::load_idx_labels(labels);
      if (l.size() != images.batch())
        throw io::DataError(labels, std::to_string(l.size()) + " labels for " + std::to_string(images.batch()) + " images");
    }
    return train::TensorImages<H, W, C>(std::move(images), std::move(l));
  }
}

}  // namespace diffuse::programs
