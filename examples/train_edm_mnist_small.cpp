// diffuse-train's training run for edm-mnist-small, with and without classes.
#include "train_run.hpp"

namespace diffuse::programs {
template int train_model<nn::edm_mnist_small>(const TrainOptions&);
template int train_model<nn::with_classes(nn::edm_mnist_small, label_classes)>(const TrainOptions&);
}  // namespace diffuse::programs
