// What every layer uses besides its parameters: the tensor core's expressions,
// initialisation, the run-time batch check and the two ways a backward writes an input
// gradient. A layer header includes this one.
//
// The layer contract (see docs/unet.md): forward(x, out) with compile-time shapes and a run-time
// batch; backward_input / backward_params (or one backward) that store or add (beta 0 or
// 1) the input gradient and accumulate (+=) the parameter gradients; visit_params(f, name)
// listing the parameters in PyTorch's state_dict order.
#pragma once

#include <cstddef>
#include <string>

#include "diffuse/core/error.hpp"
#include "diffuse/core/ops.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/core/reduce.hpp"
#include "diffuse/nn/init.hpp"
#include "diffuse/nn/param.hpp"

/// Layers of the EDM/DDPM++ UNet (NHWC, compile-time shapes, run-time batch), each with
/// forward, backward and visit_params in PyTorch's state_dict order, and the UNet built
/// from them.
namespace diffuse::nn {

/// Stores `e` into `dst` (beta == 0) or adds it (beta == 1): the two ways a backward
/// writes an input gradient.
template <class V, class E>
void store_or_add(const V& dst, const E& e, typename V::value_type beta) {
  if (beta == typename V::value_type(0)) dst = e;
  else dst += e;
}

/// Throws ShapeError unless the two batch sizes agree.
inline void check_batch(std::size_t a, std::size_t b, const char* what) {
  if (a != b)
    throw ShapeError(std::string("diffuse::nn::") + what + ": batch sizes differ (" + std::to_string(a) +
                     " and " + std::to_string(b) + ")");
}

}  // namespace diffuse::nn
