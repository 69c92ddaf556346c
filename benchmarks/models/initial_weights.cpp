// The weights diffuse-train starts edm-mnist-small from (unconditional, --seed S), written
// with PyTorch state_dict names, so that another implementation (parity_pytorch.py) can
// start from the same ones.
//
//   build/release/benchmarks/models/initial_weights 0 init.safetensors
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>

#include <diffuse/train/checkpoint.hpp>
#include <diffuse/unet.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s SEED OUT.safetensors\n", argv[0]);
    return 2;
  }
  try {
    const auto seed = std::stoull(argv[1]);
    auto net = std::make_unique<diffuse::nn::UNet<diffuse::nn::edm_mnist_small>>(seed);  // diffuse-train's start
    diffuse::train::export_weights(argv[2], *net, "edm-mnist-small");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "initial_weights: %s\n", e.what());
    return 1;
  }
  return 0;
}
