// Fuzz target: a folder of images. The input is a list of entries (one byte choosing a
// name, two bytes of length, the contents), written as files and sub-folders; the folder
// is then listed and loaded as the training data of a 28 x 28 grayscale model.
#include <diffuse/io/image_folder.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace diffuse;
  static const char* names[] = {"a.png", "b.PNG", "c.jpg", "d.jpeg", "e.bmp", "f.txt", "sub/g.png", ".h.png", "i.gif"};
  const std::filesystem::path dir = fuzz::scratch() / "folder";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::size_t i = 0;
  while (i + 3 <= size) {
    const char* name = names[data[i] % std::size(names)];
    const std::size_t len = std::min<std::size_t>(data[i + 1] | (data[i + 2] << 8), size - i - 3);
    fuzz::write_file(std::string("folder/") + name, {data + i + 3, len});
    i += 3 + len;
  }
  try {
    (void)io::image_files(dir.string());
  } catch (const io::DataError&) {
  }
  for (bool resize : {false, true}) {
    try {
      (void)io::load_image_folder<28, 28, 1>(dir.string(), resize);
    } catch (const io::DataError&) {
    }
  }
  return 0;
}
