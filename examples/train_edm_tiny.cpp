// diffuse-train's training run for edm-tiny, with and without classes.
#include "train_run.hpp"

namespace diffuse::programs {
template int train_model<nn::edm_tiny>(const TrainOptions&);
template int train_model<nn::with_classes(nn::edm_tiny, label_classes)>(const TrainOptions&);
}  // namespace diffuse::programs
