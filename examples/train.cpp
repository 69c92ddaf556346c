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
//
// This unit also compiles the Fréchet distance of --eval-every (frechet_eval.hpp) for the
// programs' image shapes, once, rather than in every configuration's unit.
#include <diffuse/programs/frechet_eval.hpp>
#include <diffuse/programs/train_command.hpp>

namespace {

// --eval-every's distance for the programs' image shapes, chosen at run time.
diffuse::programs::FrechetFunction frechet_function(std::size_t h, std::size_t w, std::size_t c,
                                                    const std::string& classifier, const std::string& reference,
                                                    std::size_t& reference_count) {
  using namespace diffuse::programs;
  if (h == 28 && w == 28 && c == 1) return frechet_function_for<28, 28, 1>(h, w, c, classifier, reference, reference_count);
  if (h == 32 && w == 32 && c == 3) return frechet_function_for<32, 32, 3>(h, w, c, classifier, reference, reference_count);
  if (h == 64 && w == 64 && c == 3) return frechet_function_for<64, 64, 3>(h, w, c, classifier, reference, reference_count);
  throw UsageError("--eval-every: no feature network for " + std::to_string(h) + "x" + std::to_string(w) + "x" +
                   std::to_string(c) + " images (diffuse-eval has them for " + joined(eval_shapes) + ")");
}

}  // namespace

int main(int argc, char** argv) {
  using namespace diffuse::programs;
  return train_command(argc, argv, registered_models<TrainEntry>(), "diffuse-train", &frechet_function);
}
