// Fuzz target: a safetensors file as a model file from the internet. The header (JSON,
// offsets, shapes, dtypes, metadata), every tensor's values, the checkpoint metadata
// diffuse writes (read_checkpoint_info) and loading the weights into edm-tiny.
#include <memory>

#include <diffuse/io/safetensors.hpp>
#include <diffuse/train/checkpoint.hpp>
#include <diffuse/train/checkpoint_info.hpp>
#include <diffuse/unet.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace diffuse;
  static auto net = std::make_unique<nn::UNet<nn::edm_tiny>>(0);
  const std::string path = fuzz::write_file("x.safetensors", {data, size});
  try {
    const io::SafetensorsFile file(path);
    for (const std::string& name : file.names()) {
      const io::TensorInfo& t = file.info(name);
      std::size_t count = 1;
      for (std::size_t d : t.shape) count *= d;  // the reader checked it against the file's bytes
      std::vector<float> v(count);
      try {
        file.read<float>(name, t.shape, std::span<float>(v));
      } catch (const io::SafetensorsError&) {  // a dtype it does not convert
      }
    }
  } catch (const io::SafetensorsError&) {
  }
  try {
    (void)train::read_checkpoint_info(path);
  } catch (const io::SafetensorsError&) {
  } catch (const io::DataError&) {
  }
  try {
    (void)train::load_sampling_weights(*net, path, "edm-tiny");
  } catch (const io::SafetensorsError&) {
  } catch (const io::DataError&) {
  }
  return 0;
}
