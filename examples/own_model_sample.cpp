// The sampler for own-model-train's checkpoints: the whole of diffuse-sample (samplers,
// schedules, guidance, img2img) for the same configuration.
//
//   own-model-sample --checkpoint runs/mine/checkpoint.safetensors --count 16 --out samples
#include <diffuse/programs/sample_main.hpp>

#include "own_model.hpp"

int main(int argc, char** argv) { return diffuse::programs::sample_main<my_net>(argc, argv, "my-net"); }
