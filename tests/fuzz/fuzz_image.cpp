// Fuzz target: one image file as a phone or the internet gives it (PNG through libspng,
// JPEG, BMP, GIF, ... through stb): read as it is, as 1 and 3 channels, and loaded into a
// 28 x 28 grayscale model input with and without --resize. Files may declare at most 2^20
// pixels, so that a legal but large image does not end the run as a time-out.
#include <diffuse/io/image.hpp>
#include <diffuse/io/image_folder.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace diffuse;
  const std::string path = fuzz::write_file("x.img", {data, size});
  for (int channels : {0, 1, 3}) {
    try {
      (void)io::read_image(path, channels, std::size_t{1} << 20);
    } catch (const io::DataError&) {
    }
  }
  Tensor<float, Shape<28, 28, 1>> x;
  for (bool resize : {false, true}) {
    try {
      io::load_image<28, 28, 1>(path, x.view(), io::ImageFit{.resize = resize, .max_pixels = std::size_t{1} << 20});
    } catch (const io::DataError&) {
    }
  }
  return 0;
}
