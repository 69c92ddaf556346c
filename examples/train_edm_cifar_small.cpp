// diffuse-train's run for edm-cifar-small, with and without classes: one translation unit per
// configuration, so that they compile in parallel.
#include <diffuse/programs/train_run.hpp>

namespace {
[[maybe_unused]] const bool registered =
    diffuse::programs::register_model(diffuse::programs::train_entry<diffuse::nn::edm_cifar_small>("edm-cifar-small"));
}  // namespace
