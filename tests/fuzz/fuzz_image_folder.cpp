// Fuzz target: a folder of images. The input is a list of entries (one byte choosing a
// name, two bytes of length, the contents), written as files and sub-folders; the folder
// is then listed and loaded as the training data of a 28 x 28 grayscale model and of a
// 16 x 16 colour one, recursively and as class folders, with every ImageFit (crop,
// resize, each Alpha). What a loader may throw is io::DataError naming a file; anything
// else, or a label that is not a class, is a finding. Files may declare at most 256 x 256
// pixels: a legal 8192 x 8192 image takes seconds to decode under the sanitizers, which
// would end the run as a time-out without finding anything.
#include <diffuse/io/image_folder.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace diffuse;
  static const char* names[] = {"a.png",     "b.PNG",   "c.jpg",       "d.jpeg", "e.bmp",
                                "f.txt",     "sub/g.png", ".h.png",    "i.gif",  "cls/x.png",
                                "sub/deep/j.png", "cls/y/k.jpg"};
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
  constexpr std::size_t max_pixels = std::size_t{1} << 16;
  for (bool resize : {false, true}) {
    try {
      (void)io::load_image_folder<28, 28, 1>(dir.string(), io::ImageFit{.resize = resize, .max_pixels = max_pixels});
    } catch (const io::DataError&) {
    }
  }
  const bool crop = size > 0 && (data[0] & 1), resize = size > 0 && (data[0] & 2);
  for (const io::Alpha alpha : {io::Alpha::white, io::Alpha::black, io::Alpha::error}) {
    const io::ImageFit fit{.resize = resize, .crop = crop, .alpha = alpha, .max_pixels = max_pixels};
    try {
      io::ImageCounts counts;
      const auto x = io::load_image_folder<16, 16, 3>(dir.string(), fit, &counts, /*recursive=*/true);
      if (counts.images != x.batch()) std::abort();
    } catch (const io::DataError&) {
    }
    try {
      const auto r = io::load_class_folders<16, 16, 3>(dir.string(), fit);
      if (r.labels.size() != r.images.batch()) std::abort();
      for (int l : r.labels)
        if (l < 0 || static_cast<std::size_t>(l) >= r.classes.size()) std::abort();
    } catch (const io::DataError&) {
    }
  }
  return 0;
}
