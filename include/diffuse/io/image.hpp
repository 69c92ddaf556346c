// Reading and writing images (PNG out; PNG, JPEG, BMP, ... in) and sample grids.
//
// Tensors hold pixels in [-1, 1] (NHWC); files hold bytes in [0, 255]. Image8 is the
// plain byte image in between. PNG decoding is libspng (it verifies the checksums);
// other formats, encoding and resizing are Debian's stb (libstb-dev): link diffuse::io
// (CMake) or -lspng -lstb. Files are written atomically
// (a temporary file, then a rename), so a crash never leaves half an image.
#pragma once

#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
#include <stb/stb_image_write.h>
#include <spng.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <memory>
#include <new>
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

/// The most pixels an image file may declare (8192 x 8192): a header is untrusted input, and
/// its sizes are checked against this before anything is allocated for the pixels.
inline constexpr std::size_t max_image_pixels = std::size_t{1} << 26;

namespace detail {

inline std::vector<unsigned char> read_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw DataError(path, "cannot open the file");
  const std::streamoff size = f.tellg();
  if (size < 0) throw DataError(path, "cannot read the file");
  std::vector<unsigned char> bytes(static_cast<std::size_t>(size));
  f.seekg(0);
  if (size > 0 && !f.read(reinterpret_cast<char*>(bytes.data()), size)) throw DataError(path, "cannot read the file");
  return bytes;
}

inline void check_declared_size(const std::string& path, std::size_t w, std::size_t h, std::size_t max_pixels) {
  if (w == 0 || h == 0 || w > max_pixels / h)
    throw DataError(path, "declares " + std::to_string(w) + "x" + std::to_string(h) + " pixels, more than the " +
                              std::to_string(max_pixels) + " an image may have (or none)");
}

// stb's luma: what stbi_load gives when it converts RGB to grey.
inline std::uint8_t luma(std::uint8_t r, std::uint8_t g, std::uint8_t b) noexcept {
  return static_cast<std::uint8_t>((r * 77 + g * 150 + 29 * b) >> 8);
}

// PNG through libspng, which verifies every chunk's CRC-32 and the zlib stream's Adler-32
// (stb skips both, so a damaged file would decode to wrong pixels without a word).
inline Image8 read_png(const std::string& path, const std::vector<unsigned char>& bytes, int channels,
                       std::size_t max_pixels) {
  std::unique_ptr<spng_ctx, void (*)(spng_ctx*)> ctx(spng_ctx_new(0), spng_ctx_free);
  if (!ctx) throw std::bad_alloc();
  auto check = [&](int e, const char* what) {
    if (e) throw DataError(path, std::string("damaged PNG (") + what + ": " + spng_strerror(e) + ")");
  };
  check(spng_set_png_buffer(ctx.get(), bytes.data(), bytes.size()), "reading");
  spng_ihdr ihdr{};
  check(spng_get_ihdr(ctx.get(), &ihdr), "header");
  check_declared_size(path, ihdr.width, ihdr.height, max_pixels);
  spng_trns trns{};
  const bool has_trns = spng_get_trns(ctx.get(), &trns) == 0;
  std::size_t file_channels = 3;
  switch (ihdr.color_type) {
    case SPNG_COLOR_TYPE_GRAYSCALE: file_channels = has_trns ? 2 : 1; break;
    case SPNG_COLOR_TYPE_GRAYSCALE_ALPHA: file_channels = 2; break;
    case SPNG_COLOR_TYPE_TRUECOLOR_ALPHA: file_channels = 4; break;
    default: file_channels = has_trns ? 4 : 3; break;  // truecolor, indexed
  }
  std::size_t size = 0;
  check(spng_decoded_image_size(ctx.get(), SPNG_FMT_RGBA8, &size), "size");
  std::vector<std::uint8_t> rgba(size);
  check(spng_decode_image(ctx.get(), rgba.data(), size, SPNG_FMT_RGBA8, SPNG_DECODE_TRNS), "pixels");
  Image8 img;
  img.height = ihdr.height;
  img.width = ihdr.width;
  img.channels = channels ? static_cast<std::size_t>(channels) : file_channels;
  img.pixels.resize(img.height * img.width * img.channels);
  const bool grey = ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE || ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA;
  for (std::size_t i = 0; i < img.height * img.width; ++i) {
    const std::uint8_t* p = rgba.data() + 4 * i;
    std::uint8_t* q = img.pixels.data() + img.channels * i;
    const std::uint8_t y = grey ? p[0] : luma(p[0], p[1], p[2]);
    switch (img.channels) {
      case 1: q[0] = y; break;
      case 2: q[0] = y, q[1] = p[3]; break;
      case 3: q[0] = p[0], q[1] = p[1], q[2] = p[2]; break;
      default: q[0] = p[0], q[1] = p[1], q[2] = p[2], q[3] = p[3]; break;
    }
  }
  return img;
}

}  // namespace detail

/// Decodes an image file; `channels` 0 keeps the file's channel count, 1 or 3 converts.
/// PNG is read with libspng (chunk CRCs and the zlib checksum verified), other formats
/// (JPEG, BMP, TGA, GIF) with stb. The size the file declares is checked against
/// `max_pixels` before the pixels are decoded. Throws DataError naming the file: it cannot
/// be opened, is not an image, is damaged, or declares too many pixels.
inline Image8 read_image(const std::string& path, int channels = 0, std::size_t max_pixels = max_image_pixels) {
  const std::vector<unsigned char> bytes = detail::read_file_bytes(path);
  static constexpr unsigned char png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.size() >= 8 && std::equal(png_signature, png_signature + 8, bytes.begin()))
    return detail::read_png(path, bytes, channels, max_pixels);
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    throw DataError(path, "cannot read image: the file is larger than 2 GB");
  const int len = static_cast<int>(bytes.size());
  int w = 0, h = 0, c = 0;
  if (!stbi_info_from_memory(bytes.data(), len, &w, &h, &c)) {
    const char* why = stbi_failure_reason();
    throw DataError(path, std::string("cannot read image: ") + (why ? why : "unknown error"));
  }
  detail::check_declared_size(path, static_cast<std::size_t>(w), static_cast<std::size_t>(h), max_pixels);
  unsigned char* p = stbi_load_from_memory(bytes.data(), len, &w, &h, &c, channels);
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

/// The image enlarged `factor` times in both directions, each pixel a factor x factor
/// block (nearest neighbour: no new colours, the pixels stay visible).
inline Image8 upscale_nearest(const Image8& img, std::size_t factor) {
  if (factor <= 1) return img;
  const std::size_t c = img.channels;
  Image8 out{img.height * factor, img.width * factor, c, std::vector<std::uint8_t>(img.pixels.size() * factor * factor)};
  for (std::size_t y = 0; y < out.height; ++y)
    for (std::size_t x = 0; x < out.width; ++x)
      std::copy_n(img.pixels.data() + ((y / factor) * img.width + x / factor) * c, c,
                  out.pixels.data() + (y * out.width + x) * c);
  return out;
}

/// The whole factor that makes an image `width` pixels wide at least `min_width` wide
/// (1 when it already is): sample grids are written at a size people can look at.
inline std::size_t readable_scale(std::size_t width, std::size_t min_width = 512) {
  return width == 0 || width >= min_width ? 1 : (min_width + width - 1) / width;
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
