// diffuse-eval: the Fréchet distance of generated images under diffuse's own feature
// network (see diffuse/programs/eval_main.hpp and docs/quality.md).
#include <diffuse/programs/eval_main.hpp>

int main(int argc, char** argv) { return diffuse::programs::eval_main(argc, argv); }
