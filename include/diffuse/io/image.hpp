// Reading and writing images (PNG out; PNG, JPEG, BMP, ... in) and sample grids.
//
// Tensors hold pixels in [-1, 1] (NHWC); files hold bytes in [0, 255]. Image8 is the
// plain byte image in between. Decoding, encoding and resizing are Debian's stb
// (libstb-dev): link diffuse::io (CMake) or -lstb. Files are written atomically
// (a temporary file, then a rename), so a crash never leaves half an image.
#pragma once

#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
#include <stb/stb_image_write.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "diffuse/core/tensor.hpp"
#include "diffuse/io/atomic_file.hpp"
#include "diffuse/io/data_error.hpp"

namespace diffuse::io {

/// An image of bytes, row-major height x width x channels.
struct Image8 {
  std::size_t height = 0;            ///< Rows.
  std::size_t width = 0;             ///< Columns.
  std::size_t channels = 0;          ///< 1 (grey), 3 (RGB) or 4 (RGBA).
  std::vector<std::uint8_t> pixels;  ///< height * width * channels bytes.
};

/// Decodes an image file; `channels` 0 keeps the file's channel count, 1 or 3 converts.
inline Image8 read_image(const std::string& path, int channels = 0) {
  int w = 0, h = 0, c = 0;
  unsigned char* p = stbi_load(path.c_str(), &w, &h, &c, channels);
  if (!p) {
    const char* why = stbi_failure_reason();
    throw DataError(path, std::string("cannot read image: ") + (why ? why : "unknown error"));
  }
  Image8 img;
  img.height = static_cast<std::size_t>(h);
  img.width = static_cast<std::size_t>(w);
  img.channels = static_cast<std::size_t>(channels ? channels : c);
  img.pixels.assign(p, p + img.height * img.width * img.channels);
  stbi_image_free(p);
  return img;
}

/// Writes a PNG atomically.
inline void write_png(const std::string& path, const Image8& img) {
  write_atomically(path, [&](const std::string& tmp) {
    if (!stbi_write_png(tmp.c_str(), static_cast<int>(img.width), static_cast<int>(img.height),
                        static_cast<int>(img.channels), img.pixels.data(), static_cast<int>(img.width * img.channels)))
      throw DataError(path, "cannot write PNG (is the folder there and writable?)");
  });
}

/// Resizes with stb's default (Mitchell/Catmull-Rom) filter.
inline Image8 resize(const Image8& img, std::size_t height, std::size_t width) {
  Image8 out{height, width, img.channels, std::vector<std::uint8_t>(height * width * img.channels)};
  if (!stbir_resize_uint8(img.pixels.data(), static_cast<int>(img.width), static_cast<int>(img.height), 0,
                          out.pixels.data(), static_cast<int>(width), static_cast<int>(height), 0,
                          static_cast<int>(img.channels)))
    throw std::runtime_error("diffuse::io::resize: stb could not resize the image");
  return out;
}

/// A pixel value in [-1, 1] as a byte (clamped, rounded).
inline std::uint8_t to_byte(float v) {
  const float b = std::round((std::clamp(v, -1.f, 1.f) + 1.f) * 127.5f);
  return static_cast<std::uint8_t>(b);
}

/// A byte as a pixel value in [-1, 1].
inline float from_byte(std::uint8_t b) { return static_cast<float>(b) / 127.5f - 1.f; }

/// One image of a tensor as bytes.
template <class T, std::size_t H, std::size_t W, std::size_t C>
Image8 to_image8(TensorView<const T, Shape<H, W, C>> x /*(H, W, C), values in [-1, 1]*/) {
  static_assert(C == 1 || C == 3 || C == 4, "diffuse::io: images have 1, 3 or 4 channels");
  Image8 img{H, W, C, std::vector<std::uint8_t>(H * W * C)};
  for (std::size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = to_byte(static_cast<float>(x.data()[i]));
  return img;
}

/// Bytes as one image of a tensor. The image must have the tensor's height, width and
/// channels (resize() first if it does not).
template <class T, std::size_t H, std::size_t W, std::size_t C>
void from_image8(const Image8& img, TensorView<T, Shape<H, W, C>> x, const std::string& what = "image") {
  if (img.height != H || img.width != W || img.channels != C)
    throw DataError(what, "is " + std::to_string(img.width) + "x" + std::to_string(img.height) + " with " +
                              std::to_string(img.channels) + " channel(s), expected " + std::to_string(W) + "x" +
                              std::to_string(H) + " with " + std::to_string(C));
  for (std::size_t i = 0; i < img.pixels.size(); ++i) x.data()[i] = static_cast<T>(from_byte(img.pixels[i]));
}

/// Tiles a batch of images into one image, `columns` per row (0: a square-ish grid),
/// separated by `gap` pixels of black.
template <class T, std::size_t H, std::size_t W, std::size_t C>
Image8 image_grid(TensorView<const T, Shape<dyn, H, W, C>> images, std::size_t columns = 0, std::size_t gap = 2) {
  const std::size_t n = images.batch();
  if (n == 0) throw std::invalid_argument("diffuse::io::image_grid: no images");
  if (columns == 0) columns = static_cast<std::size_t>(std::ceil(std::sqrt(static_cast<double>(n))));
  const std::size_t rows = (n + columns - 1) / columns;
  Image8 grid{rows * H + (rows - 1) * gap, columns * W + (columns - 1) * gap, C, {}};
  grid.pixels.assign(grid.height * grid.width * C, 0);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t top = (i / columns) * (H + gap), left = (i % columns) * (W + gap);
    const T* src = images.data() + i * H * W * C;
    for (std::size_t y = 0; y < H; ++y)
      for (std::size_t xw = 0; xw < W * C; ++xw)
        grid.pixels[((top + y) * grid.width + left) * C + xw] = to_byte(static_cast<float>(src[y * W * C + xw]));
  }
  return grid;
}

}  // namespace diffuse::io
