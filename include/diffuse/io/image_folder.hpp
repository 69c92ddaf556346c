// A folder of image files (PNG, JPEG, BMP, ...) as a batch of NHWC tensors in [-1, 1].
//
// Files are taken in name order. Each is converted to the model's channel count (grey
// or RGB); one whose size differs from the model's is resized when asked to, otherwise
// rejected with a message that names it.
#pragma once

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <string>
#include <vector>

#include "diffuse/io/image.hpp"

namespace diffuse::io {

/// The image files of `dir` (by extension), sorted by name.
inline std::vector<std::string> image_files(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) throw DataError(dir, "not a folder");
  std::vector<std::string> files;
  try {
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      if (!entry.is_regular_file()) continue;
      std::string ext = entry.path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
      if (ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".tga" || ext == ".gif")
        files.push_back(entry.path().string());
    }
  } catch (const std::filesystem::filesystem_error& e) {
    throw DataError(dir, std::string("cannot list the folder: ") + e.code().message());
  }
  if (files.empty()) throw DataError(dir, "no images (.png, .jpg, .jpeg, .bmp, .tga, .gif) in this folder");
  std::sort(files.begin(), files.end());
  return files;
}

/// Reads one image file into an (H, W, C) view: converted to C channels, resized to
/// H x W if `resize`, otherwise it must already be H x W.
template <std::size_t H, std::size_t W, std::size_t C>
void load_image(const std::string& path, TensorView<float, Shape<H, W, C>> out, bool resize_to_fit) {
  static_assert(C == 1 || C == 3, "diffuse::io::load_image: models take grey (1) or RGB (3) images");
  Image8 img = read_image(path, static_cast<int>(C));
  if ((img.height != H || img.width != W) && resize_to_fit) img = resize(img, H, W);
  if (img.height != H || img.width != W)
    throw DataError(path, "image is " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                              " but the model takes " + std::to_string(W) + "x" + std::to_string(H) +
                              " (resize it, or pass the option that resizes images)");
  from_image8(img, out, path);
}

/// Reads every image of a folder.
template <std::size_t H, std::size_t W, std::size_t C>
Tensor<float, Shape<dyn, H, W, C>> load_image_folder(const std::string& dir, bool resize_to_fit) {
  const auto files = image_files(dir);
  Tensor<float, Shape<dyn, H, W, C>> images(files.size());
  for (std::size_t i = 0; i < files.size(); ++i) load_image(files[i], images.item(i), resize_to_fit);
  return images;
}

}  // namespace diffuse::io
