// diffuse-sample: draws images from a trained EDM diffusion model (a checkpoint of
// diffuse-train, or a plain weights file with PyTorch names), or turns given images into
// new ones (img2img, SDEdit: noise them part of the way, then denoise), writing one PNG
// per image and a grid into the output folder. The model is the one the file names (or,
// for weights that do not, the configuration whose shapes they have); --model overrides.
//
//   diffuse-sample --checkpoint runs/fashion/checkpoint.safetensors --count 16 --out samples
//   diffuse-sample --checkpoint runs/fashion/model_ema.safetensors --init photos/ --strength 0.5
//   diffuse-sample --checkpoint runs/classes/checkpoint.safetensors --class 7 --guidance 2
//
// Image i of a run uses the noise of (seed, i), so the images do not depend on --batch.
// The configurations are compiled in sample_<model>.cpp (see train.cpp).
#include <diffuse/programs/sample_command.hpp>

int main(int argc, char** argv) {
  using namespace diffuse::programs;
  return sample_command(argc, argv, registered_models<SampleEntry>());
}
