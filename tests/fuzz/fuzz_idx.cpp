// Fuzz target: an IDX data set (MNIST's format), plain or gzip-compressed (the first
// byte chooses), through read_idx and the image and label loaders of the programs.
#include <zlib.h>

#include <diffuse/io/idx.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace diffuse;
  if (size == 0) return 0;
  const bool gz = data[0] & 1;
  std::string path;
  if (gz) {
    path = (fuzz::scratch() / "x.idx.gz").string();
    gzFile f = gzopen(path.c_str(), "wb");
    if (!f) std::abort();
    if (size > 1) gzwrite(f, data + 1, static_cast<unsigned>(size - 1));
    gzclose(f);
  } else {
    path = fuzz::write_file("x.idx", {data + 1, size - 1});
  }
  try {
    (void)io::read_idx(path);
  } catch (const io::DataError&) {
  }
  try {
    (void)io::load_idx_images<28, 28>(path);
  } catch (const io::DataError&) {
  }
  try {
    (void)io::load_idx_labels(path);
  } catch (const io::DataError&) {
  }
  return 0;
}
