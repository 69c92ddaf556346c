// A trainer for your own network: the whole of diffuse-train (data folders, --labels,
// --class-folders, checkpoints, --resume, logs, sample grids) for a configuration of your
// choice, here a 3 x 48 x 48 UNet with four levels.
//
//   own-model-train --data my_images/ --resize --minutes 30 --out runs/mine
#include <diffuse/programs/train_main.hpp>

#include "own_model.hpp"

int main(int argc, char** argv) { return diffuse::programs::train_main<my_net>(argc, argv, "my-net"); }
