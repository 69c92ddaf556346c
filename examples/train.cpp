// diffuse-train: trains an EDM diffusion model on a folder of images (grey or colour,
// optionally in class folders) or an IDX data set (MNIST, Fashion-MNIST), writing a
// progress line, a JSON-lines log, sample grids and checkpoints into the output folder.
// Ctrl-C saves a checkpoint; --resume goes on. With --labels or --class-folders it trains
// a class-conditional model for classifier-free guidance.
//
//   diffuse-train --data /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
//                 --model edm-mnist-small --minutes 5 --out runs/fashion
//
// The configurations are compiled in train_<model>.cpp (one translation unit each, as
// CMake's DIFFUSE_PROGRAM_MODELS lists them), which register themselves before main().
#include <diffuse/programs/train_command.hpp>

int main(int argc, char** argv) {
  using namespace diffuse::programs;
  return train_command(argc, argv, registered_models<TrainEntry>());
}
