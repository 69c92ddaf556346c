// Reading IDX files, the format of MNIST and Fashion-MNIST: plain or gzip-compressed
// (zlib reads both). Images become NHWC float tensors scaled to [-1, 1].
//
// An IDX file is a 4-byte magic (0, 0, type, rank), `rank` big-endian 32-bit extents,
// then the elements. Only unsigned bytes (type 0x08) occur in these data sets and only
// they are accepted. Every check failure throws io::DataError naming the file.
//
// Needs zlib: link diffuse::io (CMake) or -lz.
#pragma once

#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "diffuse/core/tensor.hpp"
#include "diffuse/io/data_error.hpp"

namespace diffuse::io {

/// The extents and bytes of an IDX file of unsigned bytes.
struct IdxArray {
  std::vector<std::size_t> extents;  ///< The header's extents, outermost first.
  std::vector<std::uint8_t> data;    ///< The elements, row-major (the product of the extents).
};

namespace detail {

struct GzClose {
  void operator()(gzFile_s* f) const noexcept { gzclose(f); }
};

// Reads exactly n bytes or explains what is wrong.
inline void read_exact(gzFile f, const std::string& path, void* dst, std::size_t n, const char* what) {
  auto* p = static_cast<unsigned char*>(dst);
  std::size_t done = 0;
  while (done < n) {
    const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n - done, 1u << 30));
    const int got = gzread(f, p + done, chunk);
    if (got < 0) {
      int code = 0;
      throw DataError(path, std::string("cannot read ") + what + ": " + gzerror(f, &code));
    }
    if (got == 0)
      throw DataError(path, std::string("truncated: expected ") + std::to_string(n) + " bytes of " + what +
                                ", found " + std::to_string(done));
    done += static_cast<std::size_t>(got);
  }
}

}  // namespace detail

/// Reads a whole IDX file of unsigned bytes (plain or .gz).
inline IdxArray read_idx(const std::string& path) {
  std::unique_ptr<gzFile_s, detail::GzClose> f(gzopen(path.c_str(), "rb"));
  if (!f) throw DataError(path, "cannot open file");
  unsigned char magic[4];
  detail::read_exact(f.get(), path, magic, 4, "header");
  if (magic[0] != 0 || magic[1] != 0)
    throw DataError(path, "not an IDX file (the first two bytes of the magic number must be 0)");
  if (magic[2] != 0x08)
    throw DataError(path, "IDX element type " + std::to_string(magic[2]) + " is not supported (expected 8, unsigned bytes)");
  const int rank = magic[3];
  if (rank < 1 || rank > 4) throw DataError(path, "IDX rank " + std::to_string(rank) + " is not between 1 and 4");
  IdxArray out;
  std::size_t count = 1;
  for (int d = 0; d < rank; ++d) {
    unsigned char b[4];
    detail::read_exact(f.get(), path, b, 4, "header");
    const std::size_t e = (std::size_t{b[0]} << 24) | (std::size_t{b[1]} << 16) | (std::size_t{b[2]} << 8) | b[3];
    if (e == 0) throw DataError(path, "extent " + std::to_string(d) + " is 0");
    if (count > (std::size_t{1} << 34) / e) throw DataError(path, "implausibly large extents");
    count *= e;
    out.extents.push_back(e);
  }
  // Read in pieces: a header may announce far more than the file holds, and memory must
  // follow the data actually there (a 20-byte file must not allocate gigabytes).
  constexpr std::size_t piece = std::size_t{1} << 22;
  while (out.data.size() < count) {
    const std::size_t have = out.data.size(), n = std::min(piece, count - have);
    out.data.resize(have + n);
    const int got = gzread(f.get(), out.data.data() + have, static_cast<unsigned>(n));
    if (got < 0) {
      int code = 0;
      throw DataError(path, std::string("cannot read data: ") + gzerror(f.get(), &code));
    }
    out.data.resize(have + static_cast<std::size_t>(got));
    if (got == 0)
      throw DataError(path, "truncated: expected " + std::to_string(count) + " bytes of data, found " +
                                std::to_string(have));
  }
  unsigned char extra;
  if (gzread(f.get(), &extra, 1) > 0)
    throw DataError(path, "has data after the " + std::to_string(count) + " elements its header announces");
  return out;
}

/// Reads an IDX image file (N x H x W) as a (N, H, W, 1) tensor with pixels scaled
/// from [0, 255] to [-1, 1]. The file's H and W must equal the model's.
template <std::size_t H, std::size_t W>
Tensor<float, Shape<dyn, H, W, 1>> load_idx_images(const std::string& path) {
  IdxArray a = read_idx(path);
  if (a.extents.size() != 3)
    throw DataError(path, "expected images (a rank-3 IDX file), found rank " + std::to_string(a.extents.size()));
  if (a.extents[1] != H || a.extents[2] != W)
    throw DataError(path, "images are " + std::to_string(a.extents[1]) + "x" + std::to_string(a.extents[2]) +
                              " but the model expects " + std::to_string(H) + "x" + std::to_string(W));
  Tensor<float, Shape<dyn, H, W, 1>> images(a.extents[0]);
  float* dst = images.data();
  for (std::size_t i = 0; i < a.data.size(); ++i) dst[i] = static_cast<float>(a.data[i]) / 127.5f - 1.f;  // 0 -> -1, 255 -> 1 exactly
  return images;
}

/// Reads an IDX label file (N) as class indices.
inline std::vector<int> load_idx_labels(const std::string& path) {
  IdxArray a = read_idx(path);
  if (a.extents.size() != 1)
    throw DataError(path, "expected labels (a rank-1 IDX file), found rank " + std::to_string(a.extents.size()));
  return std::vector<int>(a.data.begin(), a.data.end());
}

}  // namespace diffuse::io
