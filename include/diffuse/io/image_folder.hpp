// A folder of image files (PNG, JPEG, BMP, ...) as a batch of NHWC tensors in [-1, 1].
//
// Files are taken in name order. Each is converted to the model's channel count (grey
// or RGB: grey is repeated into R, G and B, colour becomes grey by BT.601 luma as stb weighs it),
// transparent pixels are composited onto a background or refused (ImageFit::alpha, never
// silently dropped); one whose size differs from the model's is centre-cropped and
// resized when asked to, otherwise rejected with a message that names it. A folder of
// class folders (data/<class>/*.png, torchvision's ImageFolder) gives labels.
#pragma once

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <string>
#include <unordered_set>
#include <vector>

#include "diffuse/io/image.hpp"

namespace diffuse::io {

namespace detail {

inline bool is_image_file(const std::filesystem::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".tga" || ext == ".gif";
}

}  // namespace detail

/// The image files of `dir` (by extension), sorted by name; with `recursive`, those of
/// its sub-folders too (each file once, however many links lead to it). Throws DataError
/// naming the folder when it is not one, cannot be listed or holds no images.
inline std::vector<std::string> image_files(const std::string& dir, bool recursive = false) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw DataError(dir, "not a folder");
  std::vector<std::string> files;
  std::unordered_set<std::string> seen;  // canonical paths, to take a file reached by links once
  auto take = [&](const fs::directory_entry& entry) {
    std::error_code e;
    if (!entry.is_regular_file(e) || !detail::is_image_file(entry.path())) return;
    if (recursive) {
      const std::string canonical = fs::weakly_canonical(entry.path(), e).string();
      if (!e && !seen.insert(canonical).second) return;
    }
    files.push_back(entry.path().string());
  };
  try {
    if (recursive) {
      std::vector<fs::directory_entry> entries;
      for (const auto& entry : fs::recursive_directory_iterator(dir)) entries.push_back(entry);
      std::sort(entries.begin(), entries.end());  // name order, whatever the file system's
      for (const auto& entry : entries) take(entry);
    } else {
      for (const auto& entry : fs::directory_iterator(dir)) take(entry);
    }
  } catch (const fs::filesystem_error& e) {
    throw DataError(dir, std::string("cannot list the folder: ") + e.code().message());
  }
  if (files.empty())
    throw DataError(dir, std::string("no images (.png, .jpg, .jpeg, .bmp, .tga, .gif) in this folder") +
                             (recursive ? " or its sub-folders" : ""));
  std::sort(files.begin(), files.end());
  return files;
}

/// What transparent pixels of an image with an alpha channel become.
enum class Alpha {
  white,  ///< composited onto white
  black,  ///< composited onto black
  error   ///< a DataError naming the file (opaque images with an alpha channel pass)
};

/// How an image file becomes a model input of H x W x C.
struct ImageFit {
  bool resize = false;  ///< resize an image of another size (else it is an error)
  bool crop = false;    ///< first take the centre square of a non-square image
  Alpha alpha = Alpha::white;  ///< transparent pixels
  /// The most pixels a file may declare (checked before decoding; see read_image).
  std::size_t max_pixels = max_image_pixels;
};

/// What the conversions did to the images of a folder (for the programs' data line).
struct ImageCounts {
  ///@{
  /// Images read; of them, those with transparent pixels, grey ones made RGB, colour ones
  /// made grey, non-square ones cropped, and resized ones.
  std::size_t images = 0, transparent = 0, grey_to_rgb = 0, rgb_to_grey = 0, cropped = 0, resized = 0;
  ///@}
};

/// Converts a decoded image (1-4 channels) to `channels` (1 or 3) as ImageFit says:
/// transparency composited or refused, grey repeated, colour to BT.601 luma. Counts
/// what it did in `counts`; throws DataError naming `path`.
inline Image8 to_channels(const Image8& img, std::size_t channels, Alpha alpha, const std::string& path,
                          ImageCounts* counts = nullptr) {
  const std::size_t c = img.channels, n = img.height * img.width;
  const bool has_alpha = c == 2 || c == 4;
  const std::size_t colours = has_alpha ? c - 1 : c;
  Image8 out{img.height, img.width, channels, std::vector<std::uint8_t>(n * channels)};
  bool transparent = false;
  const int background = alpha == Alpha::black ? 0 : 255;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t* p = img.pixels.data() + i * c;
    const int a = has_alpha ? p[c - 1] : 255;
    if (a < 255) transparent = true;
    auto over = [&](int v) { return static_cast<std::uint8_t>((v * a + background * (255 - a) + 127) / 255); };
    const int rgb[3] = {p[0], colours == 3 ? p[1] : p[0], colours == 3 ? p[2] : p[0]};
    if (channels == 1) {
      out.pixels[i] = over(colours == 3 ? detail::luma(p[0], p[1], p[2]) : p[0]);
    } else {
      for (int k = 0; k < 3; ++k) out.pixels[i * 3 + k] = over(rgb[k]);
    }
  }
  if (transparent && alpha == Alpha::error)
    throw DataError(path, "has transparent pixels (composite them onto white or black: the option --alpha)");
  if (counts) {
    counts->transparent += transparent;
    counts->grey_to_rgb += channels == 3 && colours == 1;
    counts->rgb_to_grey += channels == 1 && colours == 3;
  }
  return out;
}

/// The centre square of an image (the image itself when square).
inline Image8 centre_square(const Image8& img) {
  const std::size_t side = std::min(img.height, img.width);
  if (img.height == img.width) return img;
  const std::size_t top = (img.height - side) / 2, left = (img.width - side) / 2, c = img.channels;
  Image8 out{side, side, c, std::vector<std::uint8_t>(side * side * c)};
  for (std::size_t y = 0; y < side; ++y)
    std::copy_n(img.pixels.data() + ((top + y) * img.width + left) * c, side * c, out.pixels.data() + y * side * c);
  return out;
}

/// Reads one image file into an (H, W, C) view as `fit` says: converted to C channels
/// (to_channels), centre-cropped if fit.crop, resized to H x W if fit.resize, otherwise it
/// must already be H x W. Throws DataError (or io errors) naming the file.
template <std::size_t H, std::size_t W, std::size_t C>
void load_image(const std::string& path, TensorView<float, Shape<H, W, C>> out, const ImageFit& fit,
                ImageCounts* counts = nullptr) {
  static_assert(C == 1 || C == 3, "diffuse::io::load_image: models take grey (1) or RGB (3) images");
  Image8 img = to_channels(read_image(path, 0, fit.max_pixels), C, fit.alpha, path, counts);
  if (fit.crop && img.height != img.width && H == W) {
    img = centre_square(img);
    if (counts) ++counts->cropped;
  }
  if ((img.height != H || img.width != W) && fit.resize) {
    img = resize(img, H, W);
    if (counts) ++counts->resized;
  }
  if (img.height != H || img.width != W)
    throw DataError(path, "image is " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                              " but the model takes " + std::to_string(W) + "x" + std::to_string(H) +
                              " (resize it, or pass the option that resizes images)");
  from_image8(img, out, path);
  if (counts) ++counts->images;
}

/// load_image with the default ImageFit but for `resize_to_fit`.
template <std::size_t H, std::size_t W, std::size_t C>
void load_image(const std::string& path, TensorView<float, Shape<H, W, C>> out, bool resize_to_fit) {
  load_image(path, out, ImageFit{.resize = resize_to_fit});
}

/// Reads every image of a folder (with `recursive`, of its sub-folders too).
template <std::size_t H, std::size_t W, std::size_t C>
Tensor<float, Shape<dyn, H, W, C>> load_image_folder(const std::string& dir, const ImageFit& fit,
                                                     ImageCounts* counts = nullptr, bool recursive = false) {
  const auto files = image_files(dir, recursive);
  Tensor<float, Shape<dyn, H, W, C>> images(files.size());
  for (std::size_t i = 0; i < files.size(); ++i) load_image(files[i], images.item(i), fit, counts);
  return images;
}

/// load_image_folder with the default ImageFit but for `resize_to_fit`.
template <std::size_t H, std::size_t W, std::size_t C>
Tensor<float, Shape<dyn, H, W, C>> load_image_folder(const std::string& dir, bool resize_to_fit) {
  return load_image_folder<H, W, C>(dir, ImageFit{.resize = resize_to_fit});
}

/// The images of a folder of class folders, with labels (torchvision's ImageFolder).
template <std::size_t H, std::size_t W, std::size_t C>
struct ClassFolderImages {
  Tensor<float, Shape<dyn, H, W, C>> images;  ///< every image, class by class
  std::vector<int> labels;                    ///< image i's class: an index into `classes`
  std::vector<std::string> classes;           ///< the class folders' names, in name order
};

/// Reads `dir/CLASS/...` (each class folder and its sub-folders): the classes are the
/// sub-folders of `dir` in name order, numbered from 0. Throws DataError naming the
/// folder when it has no class folders, when images lie directly in it (they would have
/// no class) or when a class folder has no images.
template <std::size_t H, std::size_t W, std::size_t C>
ClassFolderImages<H, W, C> load_class_folders(const std::string& dir, const ImageFit& fit,
                                              ImageCounts* counts = nullptr) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw DataError(dir, "not a folder");
  ClassFolderImages<H, W, C> r;
  try {
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (entry.is_directory()) r.classes.push_back(entry.path().filename().string());
      else if (entry.is_regular_file() && detail::is_image_file(entry.path()))
        throw DataError(entry.path().string(), "an image outside the class folders (with class folders, every "
                                               "image goes in the folder of its class: " + dir + "/<class>/)");
    }
  } catch (const fs::filesystem_error& e) {
    throw DataError(dir, std::string("cannot list the folder: ") + e.code().message());
  }
  if (r.classes.empty()) throw DataError(dir, "no class folders (expected " + dir + "/<class>/<image>)");
  std::sort(r.classes.begin(), r.classes.end());
  std::vector<std::vector<std::string>> files;
  std::size_t total = 0;
  for (const auto& name : r.classes) {
    files.push_back(image_files((fs::path(dir) / name).string(), /*recursive=*/true));
    total += files.back().size();
  }
  r.images.resize(total);
  std::size_t i = 0;
  for (std::size_t k = 0; k < files.size(); ++k)
    for (const auto& f : files[k]) {
      load_image(f, r.images.item(i++), fit, counts);
      r.labels.push_back(static_cast<int>(k));
    }
  return r;
}

}  // namespace diffuse::io
