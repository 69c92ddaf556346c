// Linear: y = x W^T + b on (N, In) rows, W stored [Out][In] like torch.nn.Linear (so
// its elements match PyTorch's one for one). The arithmetic is kernels::gemm.
// Stateless between calls: the caller keeps the input for backward.
#pragma once

#include "diffuse/kernels/gemm.hpp"
#include "diffuse/nn/layer.hpp"

namespace diffuse::nn {

/// y = x W^T + b.  x: (N, In) -> y: (N, Out).
template <class T, std::size_t In, std::size_t Out>
struct Linear {
  using InShape = Shape<dyn, In>;  ///< (N, In)
  using OutShape = Shape<dyn, Out>;  ///< (N, Out)
  static constexpr std::size_t param_count = In * Out + Out;  ///< Number of parameters.

  Param<T, Shape<Out, In>> weight;  ///< [Out][In], as torch.nn.Linear.weight
  Param<T, Shape<Out>> bias;  ///< [Out]

  /// PyTorch's default initialisation (fan_in = In).
  void init(Generator& g) { init_pytorch_default(weight, &bias, In, g); }

  /// y = beta * y + x W^T + b.
  void forward(TensorView<const T, InShape> x /*(N,In)*/, TensorView<T, OutShape> y /*(N,Out)*/,
               T beta = T(0)) const {
    check_batch(x.batch(), y.batch(), "Linear::forward");
    using kernels::index_t;
    kernels::gemm<T>(false, true, index_t(x.batch()), index_t(Out), index_t(In), T(1), x.data(), index_t(In),
                     weight.value.data(), index_t(In), beta, y.data(), index_t(Out), {bias.value.data()});
  }

  /// weight.grad += dy^T x, bias.grad += column sums of dy.
  void backward_params(TensorView<const T, InShape> x /*(N,In)*/, TensorView<const T, OutShape> dy /*(N,Out)*/) {
    check_batch(x.batch(), dy.batch(), "Linear::backward");
    using kernels::index_t;
    const std::size_t n = x.batch();
    kernels::gemm<T>(true, false, index_t(Out), index_t(In), index_t(n), T(1), dy.data(), index_t(Out), x.data(),
                     index_t(In), T(1), weight.grad.data(), index_t(In));
    T* db = bias.grad.data();
    if (diffuse::detail::on_device()) {
      kernels::device::add_column_sums<T>(diffuse::detail::device_address(dy.data()), diffuse::detail::device_address(db),
                                          index_t(n), index_t(Out), T(1));
      return;
    }
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t o = 0; o < Out; ++o) db[o] += dy.data()[i * Out + o];
  }

  /// dx = beta * dx + dy W.
  void backward_input(TensorView<const T, OutShape> dy /*(N,Out)*/, TensorView<T, InShape> dx /*(N,In)*/,
                      T beta = T(0)) const {
    check_batch(dx.batch(), dy.batch(), "Linear::backward");
    using kernels::index_t;
    kernels::gemm<T>(false, false, index_t(dy.batch()), index_t(In), index_t(Out), T(1), dy.data(), index_t(Out),
                     weight.value.data(), index_t(In), beta, dx.data(), index_t(In));
  }

  /// Both: parameter gradients (+=) and dx = beta * dx + dy W.
  void backward(TensorView<const T, InShape> x, TensorView<const T, OutShape> dy, TensorView<T, InShape> dx,
                T beta = T(0)) {
    backward_params(x, dy);
    backward_input(dy, dx, beta);
  }

  /// Calls f(ParamRef) for weight and bias.
  template <class F>
  void visit_params(F& f, ParamName& name) {
    detail::visit_param(f, name, "weight", weight);
    detail::visit_param(f, name, "bias", bias);
  }
  /// f(name, value, grad) for weight and bias.
  template <class F>
  void for_each_param(F&& f) { for_each_param_of(*this, f); }
  /// Sets the parameter gradients to zero.
  void zero_grad() { weight.zero_grad(); bias.zero_grad(); }
};

}  // namespace diffuse::nn
