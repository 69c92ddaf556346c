// SiLU, x * sigmoid(x), as a layer without parameters (the embedding MLP uses it; the
// normalisations fuse it instead, see kernels/group_norm.hpp).
#pragma once

#include "diffuse/nn/layer.hpp"

namespace diffuse::nn {

/// y = silu(x) element-wise on any shape S.
template <class T, class S>
struct SiLU {
  static constexpr std::size_t param_count = 0;  ///< No parameters.
  /// y may alias x.
  static void forward(TensorView<const T, S> x, TensorView<T, S> y) { y = diffuse::silu(x); }
  /// dx = beta * dx + dy * silu'(x). dx may alias dy.
  static void backward(TensorView<const T, S> x, TensorView<const T, S> dy, TensorView<T, S> dx, T beta = T(0)) {
    store_or_add(dx, diffuse::detail::make_map(fn::SiluBackward{}, x, dy), beta);
  }
  /// Visits nothing (no parameters).
  template <class F>
  void visit_params(F&, ParamName&) {}
};

}  // namespace diffuse::nn
