// diffuse-sample's sampling run for edm-mnist-small, with and without classes.
#include "sample_run.hpp"

namespace diffuse::programs {
template int sample_model<nn::edm_mnist_small>(const SampleOptions&, const std::vector<double>&);
template int sample_model<nn::with_classes(nn::edm_mnist_small, label_classes)>(const SampleOptions&, const std::vector<double>&);
}  // namespace diffuse::programs
