// The Fréchet distance of generated images against a reference set, under a classifier
// written by `diffuse-eval classifier` (metrics/classifier.hpp, metrics/frechet.hpp): what
// diffuse-eval fd prints and diffuse-train --eval-every logs. Needs Eigen (diffuse::eval).
#pragma once

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "diffuse/io/data_error.hpp"
#include "diffuse/io/idx.hpp"
#include "diffuse/io/image_folder.hpp"
#include "diffuse/metrics/classifier.hpp"
#include "diffuse/programs/common.hpp"
#include "diffuse/programs/train_options.hpp"

namespace diffuse::programs {

/// The image shapes diffuse-eval has a feature network for (those of the programs' models).
inline const std::vector<std::string> eval_shapes = {"28x28x1", "32x32x3", "64x64x3"};

/// Images of (H, W, C) from an IDX file (C == 1) or a folder of image files (with its
/// sub-folders; files called grid.png left out, the others in name order): `count`
/// images (0: all) after the first `skip`. Throws io::DataError naming the file or folder,
/// also when it has no more than `skip` images.
template <std::size_t H, std::size_t W, std::size_t C>
Tensor<float, Shape<dyn, H, W, C>> load_eval_images(const std::string& path, bool resize, std::size_t count = 0,
                                                    std::size_t skip = 0) {
  auto part = [&](std::size_t total) {
    if (skip >= total)
      throw io::DataError(path, std::to_string(total) + " images, none left after skipping " + std::to_string(skip));
    return count == 0 ? total - skip : std::min(count, total - skip);
  };
  if (!std::filesystem::is_directory(path)) {
    if (!std::filesystem::exists(path)) throw io::DataError(path, "no such file or folder");
    if constexpr (C != 1) {
      throw io::DataError(path, "IDX files hold grey images, but the classifier takes " + std::to_string(C) +
                                    " channels (give a folder of image files)");
    } else {
      auto all = io::load_idx_images<H, W>(path);
      const std::size_t n = part(all.batch());
      if (n == all.batch()) return all;
      Tensor<float, Shape<dyn, H, W, C>> some(n);
      std::copy_n(all.data() + skip * H * W * C, some.size(), some.data());
      return some;
    }
  }
  std::vector<std::string> files = io::image_files(path, /*recursive=*/true);
  std::erase_if(files, [](const std::string& f) { return std::filesystem::path(f).filename() == "grid.png"; });
  if (files.empty()) throw io::DataError(path, "no images besides grid.png");
  const std::size_t n = part(files.size());
  Tensor<float, Shape<dyn, H, W, C>> t(n);
  const io::ImageFit fit{.resize = resize};
  for (std::size_t i = 0; i < n; ++i)
    io::load_image<H, W, C>(files[skip + i], t.item(i), fit);
  return t;
}

/// The feature network and the reference set's feature statistics, read once; then
/// evaluate(images) is the Fréchet distance of `images` (N >= 2) against the reference.
template <std::size_t H, std::size_t W, std::size_t C>
class FrechetEvaluator {
 public:
  /// Loads the classifier `file` (io::SafetensorsError naming it unless it is a classifier
  /// of (H, W, C) images) and the reference images (load_eval_images; io::DataError), and
  /// computes the reference's statistics. Throws UsageError for fewer than two images.
  FrechetEvaluator(const io::SafetensorsFile& file, const std::string& reference, bool resize = false)
      : reference_(metrics::feature_dim) {
    metrics::load_classifier(net_, file);
    const auto ref = load_eval_images<H, W, C>(reference, resize);
    if (ref.batch() < 2)
      throw UsageError("the Fréchet distance needs at least two reference images (" + reference + " has " +
                       std::to_string(ref.batch()) + ")");
    reference_ = metrics::feature_stats(net_, ref.view());
  }

  /// The Fréchet distance of `images` (N >= 2, pixels in [-1, 1]) against the reference.
  double operator()(TensorView<const float, Shape<dyn, H, W, C>> images) {
    return metrics::frechet_distance(metrics::feature_stats(net_, images), reference_);
  }
  /// Images in the reference set.
  std::size_t reference_count() const noexcept { return reference_.count(); }

 private:
  metrics::Classifier<H, W, C, label_classes> net_;
  metrics::FeatureStats reference_;
};

/// A FrechetFactory for images (H, W, C) alone: the FrechetFunction of classifier file
/// `classifier` and the images `reference`. Throws io::DataError or io::SafetensorsError
/// naming the file, UsageError for another shape.
template <std::size_t H, std::size_t W, std::size_t C>
FrechetFunction frechet_function_for(std::size_t h, std::size_t w, std::size_t c, const std::string& classifier,
                                     const std::string& reference, std::size_t& reference_count) {
  if (h != H || w != W || c != C)
    throw UsageError("the Fréchet distance of this program takes " + std::to_string(H) + "x" + std::to_string(W) + "x" +
                     std::to_string(C) + " images, not " + std::to_string(h) + "x" + std::to_string(w) + "x" +
                     std::to_string(c));
  if (!std::filesystem::is_regular_file(classifier))
    throw io::DataError(classifier, "no such file (make one with diffuse-eval classifier)");
  auto e = std::make_shared<FrechetEvaluator<H, W, C>>(io::SafetensorsFile(classifier), reference);
  reference_count = e->reference_count();
  return [e](const float* images, std::size_t n) {
    return (*e)(TensorView<const float, Shape<dyn, H, W, C>>(images, n));
  };
}

}  // namespace diffuse::programs
