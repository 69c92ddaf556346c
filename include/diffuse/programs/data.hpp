// Reading the programs' training images: an IDX file with optional labels, a folder of
// image files (and its sub-folders), or a folder of class folders with their labels. The
// whole data set is read once into memory; describe() says what it holds.
#pragma once

#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/io/data_error.hpp"
#include "diffuse/io/idx.hpp"
#include "diffuse/io/image_folder.hpp"
#include "diffuse/programs/common.hpp"
#include "diffuse/programs/train_options.hpp"
#include "diffuse/train/image_source.hpp"

namespace diffuse::programs {

/// The training images, with what reading them did.
template <std::size_t H, std::size_t W, std::size_t C>
struct TrainingData {
  train::TensorImages<H, W, C> images;  ///< the images (and labels), in memory
  std::vector<std::string> classes;  ///< class folders' names (--class-folders), else empty
  io::ImageCounts counts;            ///< what the conversions did (image folders)

  /// "819 images of 32x32x3 from DIR, 9.6 MiB in memory; 819 with transparency composited
  /// onto white (--alpha); 8 classes: a, b, ..."
  std::string describe(const std::string& path, const TrainOptions& o) const {
    char head[160];
    std::snprintf(head, sizeof head, "%zu images of %zux%zux%zu from ", images.size(), H, W, C);
    std::string s = head + path;
    std::snprintf(head, sizeof head, ", %.1f MiB in memory",
                  double(images.size() * H * W * C * sizeof(float)) / (1024.0 * 1024.0));
    s += head;
    auto part = [&](std::size_t n, const std::string& what) {
      if (n) s += "; " + std::to_string(n) + " " + what;
    };
    part(counts.transparent, "with transparent pixels composited onto " + o.alpha + " (--alpha)");
    part(counts.grey_to_rgb, "grey, repeated into R, G and B");
    part(counts.rgb_to_grey, "in colour, made grey");
    part(counts.cropped, "cropped to their centre square (--crop)");
    part(counts.resized, "resized (--resize)");
    if (!classes.empty()) s += "; " + std::to_string(classes.size()) + " classes: " + joined(classes);
    return s;
  }
};

/// The images (and labels) the options name: an IDX file (plain or .gz; optional IDX
/// labels), a folder of image files read with its sub-folders, or with --class-folders a
/// folder of at most label_classes class folders. Throws io::DataError naming the file or
/// folder, UsageError for options that do not fit the data.
template <std::size_t H, std::size_t W, std::size_t C>
TrainingData<H, W, C> load_training_data(const TrainOptions& o) {
  const std::string& path = o.data;
  if (std::filesystem::is_directory(path)) {
    if (!o.labels.empty())
      throw UsageError("--labels goes with an IDX image file, not a folder (class folders: --class-folders)");
    const io::ImageFit fit{.resize = o.resize,
                           .crop = o.crop,
                           .alpha = o.alpha == "black" ? io::Alpha::black
                                    : o.alpha == "error" ? io::Alpha::error
                                                         : io::Alpha::white};
    io::ImageCounts counts;
    if (o.class_folders) {
      auto r = io::load_class_folders<H, W, C>(path, fit, &counts);
      if (r.classes.size() > label_classes)
        throw io::DataError(path, std::to_string(r.classes.size()) + " class folders; the programs' class-conditional "
                                  "models take at most " + std::to_string(label_classes) + " classes");
      return {train::TensorImages<H, W, C>(std::move(r.images), std::move(r.labels)), std::move(r.classes), counts};
    }
    auto images = io::load_image_folder<H, W, C>(path, fit, &counts, /*recursive=*/true);
    return {train::TensorImages<H, W, C>(std::move(images)), {}, counts};
  }
  if (o.class_folders) throw UsageError("--class-folders needs --data to be a folder of class folders");
  if constexpr (C != 1) {
    throw io::DataError(path, "IDX files hold grey images, but the model takes " + std::to_string(C) + " channels");
  } else {
    auto images = io::load_idx_images<H, W>(path);
    std::vector<int> l;
    if (!o.labels.empty()) {
      l = io::load_idx_labels(o.labels);
      if (l.size() != images.batch())
        throw io::DataError(o.labels, std::to_string(l.size()) + " labels for " + std::to_string(images.batch()) + " images");
    }
    return {train::TensorImages<H, W, C>(std::move(images), std::move(l)), {}, {}};
  }
}

}  // namespace diffuse::programs
