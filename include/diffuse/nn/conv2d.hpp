// Conv2d: a 2-D convolution layer on NHWC activations (square kernel K, stride, zero
// padding), with bias. Owns weight [K][K][Cin][Cout] (HWIO) and bias [Cout]; the
// arithmetic is kernels::conv2d_*. Stateless between calls: the caller keeps the input
// for backward (llm.c discipline: outputs first, backward accumulates into .grad).
//
// PyTorch equivalent: torch.nn.Conv2d(Cin, Cout, K, stride, padding), whose weight is
// [Cout][Cin][K][K]; for_each/visit_params report that shape and the HWIO layout.
#pragma once

#include "diffuse/kernels/conv2d.hpp"
#include "diffuse/nn/layer.hpp"

namespace diffuse::nn {

/// y = conv(x, weight) + bias.  x: (N, H, W, Cin) -> y: (N, OH, OW, Cout).
template <class T, std::size_t Cin, std::size_t Cout, std::size_t K, std::size_t H, std::size_t W,
          std::size_t Stride = 1, std::size_t Pad = K / 2>
struct Conv2d {
  static_assert(H + 2 * Pad >= K && W + 2 * Pad >= K, "diffuse::nn::Conv2d: kernel larger than the padded input");
  static constexpr std::size_t OH = (H + 2 * Pad - K) / Stride + 1;  ///< Output height.
  static constexpr std::size_t OW = (W + 2 * Pad - K) / Stride + 1;  ///< Output width.
  using In = Shape<dyn, H, W, Cin>;  ///< (N, H, W, Cin)
  using Out = Shape<dyn, OH, OW, Cout>;  ///< (N, OH, OW, Cout)
  static constexpr std::size_t param_count = K * K * Cin * Cout + Cout;  ///< Number of parameters.

  Param<T, Shape<K, K, Cin, Cout>> weight;  ///< HWIO
  Param<T, Shape<Cout>> bias;  ///< [Cout]

  /// PyTorch's default initialisation (fan_in = Cin * K * K).
  void init(Generator& g) { init_pytorch_default(weight, &bias, Cin * K * K, g); }

  /// The kernels' description of this convolution for a batch of n.
  static kernels::Conv2dShape shape(std::size_t n) {
    using kernels::index_t;
    return {index_t(n), index_t(H), index_t(W), index_t(Cin), index_t(Cout), index_t(K), index_t(Stride),
            index_t(Pad)};
  }

  /// y = beta * y + conv(x) + bias (beta 0 overwrites y).
  void forward(TensorView<const T, In> x /*(N,H,W,Cin)*/, TensorView<T, Out> y /*(N,OH,OW,Cout)*/,
               T beta = T(0)) const {
    check_batch(x.batch(), y.batch(), "Conv2d::forward");
    kernels::conv2d_forward(shape(x.batch()), x.data(), weight.value.data(), bias.value.data(), y.data(), beta);
  }

  /// weight.grad += dL/dweight, bias.grad += dL/dbias.
  void backward_params(TensorView<const T, In> x /*(N,H,W,Cin)*/, TensorView<const T, Out> dy /*(N,OH,OW,Cout)*/) {
    check_batch(x.batch(), dy.batch(), "Conv2d::backward");
    kernels::conv2d_backward_weight(shape(x.batch()), x.data(), dy.data(), weight.grad.data(), bias.grad.data(),
                                    T(1));
  }

  /// dx = beta * dx + dL/dx (beta 0 overwrites, 1 accumulates).
  void backward_input(TensorView<const T, Out> dy /*(N,OH,OW,Cout)*/, TensorView<T, In> dx /*(N,H,W,Cin)*/,
                      T beta = T(0)) const {
    check_batch(dx.batch(), dy.batch(), "Conv2d::backward");
    kernels::conv2d_backward_input(shape(dy.batch()), dy.data(), weight.value.data(), dx.data(), beta);
  }

  /// Both: parameter gradients (+=) and the input gradient.
  void backward(TensorView<const T, In> x, TensorView<const T, Out> dy, TensorView<T, In> dx, T beta = T(0)) {
    backward_params(x, dy);
    backward_input(dy, dx, beta);
  }

  /// Calls f(ParamRef) for weight (PyTorch [Cout][Cin][K][K], HWIO layout) and bias.
  template <class F>
  void visit_params(F& f, ParamName& name) {
    detail::visit_param(f, name, "weight", weight, ParamLayout::conv_hwio);
    detail::visit_param(f, name, "bias", bias);
  }
  /// f(name, value, grad) for weight and bias.
  template <class F>
  void for_each_param(F&& f) { for_each_param_of(*this, f); }
  /// Sets the parameter gradients to zero.
  void zero_grad() { weight.zero_grad(); bias.zero_grad(); }
};

/// A 1x1 convolution (a per-pixel Linear on the channels).
template <class T, std::size_t Cin, std::size_t Cout, std::size_t H, std::size_t W>
using Conv1x1 = Conv2d<T, Cin, Cout, 1, H, W, 1, 0>;

/// A 3x3 convolution with padding 1 (same size).
template <class T, std::size_t Cin, std::size_t Cout, std::size_t H, std::size_t W>
using Conv3x3 = Conv2d<T, Cin, Cout, 3, H, W, 1, 1>;

}  // namespace diffuse::nn
