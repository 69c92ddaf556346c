// Initialisation of parameters: PyTorch's defaults, drawn from diffuse's counter-based
// Generator (so the same seed gives the same weights on any thread count; the values
// differ from PyTorch's own generator).
#pragma once

#include <cmath>
#include <cstddef>

#include "diffuse/core/random.hpp"
#include "diffuse/nn/param.hpp"

namespace diffuse::nn {

/// Fills `p` uniformly in (-bound, bound).
template <class T, class S>
void init_uniform(Param<T, S>& p, Generator& g, double bound) {
  fill_uniform(p.value, g, -bound, bound);
  update_device(p.value.data(), p.value.size());  // drawn on the host
}

/// PyTorch's default for Conv2d and Linear: kaiming_uniform(a = sqrt(5)) for the weight,
/// i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias.
template <class T, class SW, class SB>
void init_pytorch_default(Param<T, SW>& weight, Param<T, SB>* bias, std::size_t fan_in, Generator& g) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  init_uniform(weight, g, bound);
  if (bias) init_uniform(*bias, g, bound);
}

}  // namespace diffuse::nn
