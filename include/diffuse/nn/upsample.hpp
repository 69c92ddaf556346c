// Resolution changes of the UNet: Upsample (nearest neighbour x2, no parameters),
// UpsampleConv (Upsample then Conv3x3: the decoder's step between levels) and Downsample
// (Conv3x3 with stride 2 and padding 1: the encoder's step; H -> ceil(H / 2)).
#pragma once

#include "diffuse/kernels/resample.hpp"
#include "diffuse/nn/conv2d.hpp"

namespace diffuse::nn {

/// Nearest-neighbour upsampling by 2: (N, H, W, C) -> (N, 2H, 2W, C).
template <class T, std::size_t H, std::size_t W, std::size_t C>
struct Upsample {
  using In = Shape<dyn, H, W, C>;  ///< (N, H, W, C)
  using Out = Shape<dyn, 2 * H, 2 * W, C>;  ///< (N, 2H, 2W, C)
  static constexpr std::size_t param_count = 0;  ///< No parameters.

  /// y[n, i, j] = x[n, i / 2, j / 2].
  static void forward(TensorView<const T, In> x /*(N,H,W,C)*/, TensorView<T, Out> y /*(N,2H,2W,C)*/) {
    check_batch(x.batch(), y.batch(), "Upsample::forward");
    using kernels::index_t;
    kernels::upsample2x_nearest_forward(x.data(), y.data(), index_t(x.batch()), index_t(H), index_t(W), index_t(C));
  }
  /// dx = beta * dx + (sum of dy over each 2x2 block).
  static void backward(TensorView<const T, Out> dy /*(N,2H,2W,C)*/, TensorView<T, In> dx /*(N,H,W,C)*/,
                       T beta = T(0)) {
    check_batch(dx.batch(), dy.batch(), "Upsample::backward");
    using kernels::index_t;
    kernels::upsample2x_nearest_backward(dy.data(), dx.data(), index_t(dx.batch()), index_t(H), index_t(W),
                                         index_t(C), beta);
  }
  /// Visits nothing (no parameters).
  template <class F>
  void visit_params(F&, ParamName&) {}
};

/// Upsample x2 then Conv3x3 (C -> C). Keeps nothing: the upsampled image lives in scratch
/// and backward upsamples again (a copy, cheaper than keeping 4 H W C values per image).
template <class T, std::size_t H, std::size_t W, std::size_t C>
struct UpsampleConv {
  using In = Shape<dyn, H, W, C>;  ///< (N, H, W, C)
  using Out = Shape<dyn, 2 * H, 2 * W, C>;  ///< (N, 2H, 2W, C)
  using Conv = Conv3x3<T, C, C, 2 * H, 2 * W>;  ///< The 3x3 convolution after the upsampling.
  static constexpr std::size_t param_count = Conv::param_count;  ///< Number of parameters.
  static constexpr std::size_t activations_per_image = 0;  ///< Nothing saved: the caller keeps the input.
  static constexpr std::size_t forward_workspace_per_image = 4 * H * W * C;  ///< the upsampled input
  static constexpr std::size_t workspace_per_image = 8 * H * W * C;  ///< the upsampled input and its gradient

  Conv conv;  ///< The convolution (PyTorch name "conv").

  /// PyTorch's default initialisation of the convolution.
  void init(Generator& g) { conv.init(g); }
  /// y = conv(upsample(x)). ws: N * forward_workspace_per_image elements.
  void forward(TensorView<const T, In> x /*(N,H,W,C)*/, TensorView<T, Out> y /*(N,2H,2W,C)*/, T* ws) {
    TensorView<T, Out> up(ws, x.batch());
    Upsample<T, H, W, C>::forward(x, up);
    conv.forward(up, y);
  }
  /// x: the input of forward; dx = beta * dx + dL/dx. ws: N * workspace_per_image elements.
  void backward(TensorView<const T, In> x, TensorView<const T, Out> dy, TensorView<T, In> dx, T beta, T* ws) {
    check_batch(x.batch(), dy.batch(), "UpsampleConv::backward");
    TensorView<T, Out> dup(ws, dy.batch()), up(ws + dy.batch() * 4 * H * W * C, dy.batch());
    Upsample<T, H, W, C>::forward(x, up);
    conv.backward(up, dy, dup);
    Upsample<T, H, W, C>::backward(dup, dx, beta);
  }
  /// Calls f(ParamRef) for conv.weight and conv.bias.
  template <class F>
  void visit_params(F& f, ParamName& name) { detail::visit_child(f, name, "conv", conv); }
  /// f(name, value, grad) for conv.weight and conv.bias.
  template <class F>
  void for_each_param(F&& f) { for_each_param_of(*this, f); }
};

/// Conv3x3, stride 2, padding 1 (C -> C): (N, H, W, C) -> (N, ceil(H/2), ceil(W/2), C).
template <class T, std::size_t H, std::size_t W, std::size_t C>
struct Downsample {
  using Conv = Conv2d<T, C, C, 3, H, W, 2, 1>;  ///< The strided convolution.
  using In = typename Conv::In;  ///< (N, H, W, C)
  using Out = typename Conv::Out;  ///< (N, ceil(H/2), ceil(W/2), C)
  static constexpr std::size_t param_count = Conv::param_count;  ///< Number of parameters.
  static constexpr std::size_t activations_per_image = 0;  ///< Nothing saved: the caller keeps the input.
  static constexpr std::size_t workspace_per_image = 0;  ///< No scratch.

  Conv conv;  ///< The convolution (PyTorch name "conv").

  /// PyTorch's default initialisation of the convolution.
  void init(Generator& g) { conv.init(g); }
  /// y = conv(x).
  void forward(TensorView<const T, In> x, TensorView<T, Out> y) { conv.forward(x, y); }
  /// x: the input of forward; dx = beta * dx + dL/dx.
  void backward(TensorView<const T, In> x, TensorView<const T, Out> dy, TensorView<T, In> dx, T beta) {
    conv.backward(x, dy, dx, beta);
  }
  /// Calls f(ParamRef) for conv.weight and conv.bias.
  template <class F>
  void visit_params(F& f, ParamName& name) { detail::visit_child(f, name, "conv", conv); }
  /// f(name, value, grad) for conv.weight and conv.bias.
  template <class F>
  void for_each_param(F&& f) { for_each_param_of(*this, f); }
};

}  // namespace diffuse::nn
