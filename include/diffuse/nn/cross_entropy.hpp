// Softmax cross-entropy of class scores (logits) against integer labels, averaged over the
// batch, and its gradient: torch.nn.functional.cross_entropy(logits, labels) with the
// default reduction "mean". The classifier of metrics/classifier.hpp trains with it.
//
//   loss = (1/N) sum_i [ logsumexp(z_i) - z_i[y_i] ],   dL/dz_i = (softmax(z_i) - onehot(y_i)) / N
#pragma once

#include <algorithm>
#include <cmath>
#include <span>
#include <stdexcept>
#include <string>

#include "diffuse/nn/layer.hpp"

namespace diffuse::nn {

/// The mean cross-entropy of `logits` (N, K) against `labels` (N values in [0, K)); when
/// `dlogits` is not null it receives dL/dlogits (N x K values). Accumulated in double. Throws
/// std::invalid_argument when the label count differs from N or a label is out of range.
template <class T, std::size_t K>
double softmax_cross_entropy(TensorView<const T, Shape<dyn, K>> logits, std::span<const int> labels,
                             T* dlogits = nullptr) {
  const std::size_t n = logits.batch();
  if (labels.size() != n)
    throw std::invalid_argument("diffuse::nn::softmax_cross_entropy: " + std::to_string(labels.size()) +
                                " labels for " + std::to_string(n) + " rows of logits");
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const int y = labels[i];
    if (y < 0 || std::size_t(y) >= K)
      throw std::invalid_argument("diffuse::nn::softmax_cross_entropy: label " + std::to_string(y) +
                                  " is not a class of 0.." + std::to_string(K - 1));
    const T* z = logits.data() + i * K;
    const double zmax = *std::max_element(z, z + K);
    double s = 0.0;
    for (std::size_t k = 0; k < K; ++k) s += std::exp(double(z[k]) - zmax);
    total += zmax + std::log(s) - double(z[y]);
    if (dlogits != nullptr) {
      T* d = dlogits + i * K;
      for (std::size_t k = 0; k < K; ++k)
        d[k] = T((std::exp(double(z[k]) - zmax) / s - (int(k) == y ? 1.0 : 0.0)) / double(n));
    }
  }
  return n ? total / double(n) : 0.0;
}

}  // namespace diffuse::nn
