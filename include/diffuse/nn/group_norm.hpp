// GroupNorm with its fusions: y = act(GN(x) * (1 + scale) + shift), where GN is
// GroupNorm with affine weight and bias (eps 1e-5), scale/shift are optional per-image,
// per-channel vectors (the ResBlock's adaptive modulation) and act is SiLU or identity.
//
// The layer GroupNorm<T, H, W, C, G, Silu, Adaptive> owns the parameters and the saved
// per-group statistics; the computation is kernels::group_norm_forward / _backward
// (kernels/group_norm.hpp), whose backward recomputes the pre-activation from x and the
// statistics instead of keeping it (memory is the scarcer resource).
//
// PyTorch equivalent: torch.nn.GroupNorm(G, C, eps=1e-5) (+ the modulation and SiLU).
#pragma once

#include "diffuse/kernels/group_norm.hpp"
#include "diffuse/nn/layer.hpp"

namespace diffuse::nn {

/// GroupNorm(G groups, C channels, eps 1e-5, affine) on (N, H, W, C), optionally followed
/// by the modulation `* (1 + scale) + shift` (Adaptive) and SiLU (Silu).
template <class T, std::size_t H, std::size_t W, std::size_t C, std::size_t G, bool Silu = false,
          bool Adaptive = false>
struct GroupNorm {
  static_assert(G > 0 && C % G == 0, "diffuse::nn::GroupNorm: channels must be divisible by groups");
  static_assert(H * W >= 2, "diffuse::nn::GroupNorm: needs at least 2 pixels per image");
  using Act = Shape<dyn, H, W, C>;  ///< (N, H, W, C): input and output
  using Mod = Shape<dyn, 2 * C>;  ///< (scale | shift) per image
  static constexpr std::size_t param_count = 2 * C;  ///< Number of parameters (weight and bias).
  static constexpr double eps = 1e-5;  ///< Added to the variance, as PyTorch's default.
  /// Saved per image: the (mean, rstd) of each group.
  static constexpr std::size_t activations_per_image = 2 * G;
  /// Scratch per image that backward needs (ws argument).
  static constexpr std::size_t workspace_per_image = H * W * C;

  Param<T, Shape<C>> weight;  ///< [C] per-channel scale (gamma)
  Param<T, Shape<C>> bias;  ///< [C] per-channel shift (beta)
  Tensor<T, Shape<dyn, G, 2>> stats;  ///< (N, G, 2): mean, 1/sqrt(var + eps)

  /// Initialised as PyTorch does (weight 1, bias 0).
  GroupNorm() { init(); }
  /// PyTorch's default: weight 1, bias 0.
  void init() {
    weight.value = T(1);
    bias.value = T(0);
  }

  /// y = act(GN(x)); y may alias x.
  void forward(TensorView<const T, Act> x /*(N,H,W,C)*/, TensorView<T, Act> y /*(N,H,W,C)*/)
    requires(!Adaptive)
  {
    run_forward(x, nullptr, y);
  }
  /// y = act(GN(x) * (1 + scale) + shift), ss = (scale | shift) per image.
  void forward(TensorView<const T, Act> x /*(N,H,W,C)*/, TensorView<const T, Mod> ss /*(N,2C)*/,
               TensorView<T, Act> y /*(N,H,W,C)*/)
    requires(Adaptive)
  {
    check_batch(x.batch(), ss.batch(), "GroupNorm::forward");
    run_forward(x, ss.data(), y);
  }

  /// dx = beta * dx + dL/dx; weight/bias grads +=. ws: N * workspace_per_image.
  void backward(TensorView<const T, Act> x, TensorView<const T, Act> dy, TensorView<T, Act> dx, T beta, T* ws)
    requires(!Adaptive)
  {
    check_batch(x.batch(), dy.batch(), "GroupNorm::backward");
    check_batch(x.batch(), dx.batch(), "GroupNorm::backward");
    kernels::group_norm_backward<T, C, G>(x.data(), stats.data(), weight.value.data(), bias.value.data(), nullptr,
                                         Silu, dy.data(), dx.data(), beta, weight.grad.data(), bias.grad.data(),
                                         nullptr, ws, x.batch(), H * W);
  }
  /// As above, and dss = dL/d(scale | shift) (overwritten).
  void backward(TensorView<const T, Act> x, TensorView<const T, Mod> ss, TensorView<const T, Act> dy,
                TensorView<T, Act> dx, T beta, TensorView<T, Mod> dss, T* ws)
    requires(Adaptive)
  {
    check_batch(x.batch(), dy.batch(), "GroupNorm::backward");
    check_batch(x.batch(), dss.batch(), "GroupNorm::backward");
    kernels::group_norm_backward<T, C, G>(x.data(), stats.data(), weight.value.data(), bias.value.data(), ss.data(),
                                         Silu, dy.data(), dx.data(), beta, weight.grad.data(), bias.grad.data(),
                                         dss.data(), ws, x.batch(), H * W);
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

 private:
  void run_forward(TensorView<const T, Act> x, const T* ss, TensorView<T, Act> y) {
    check_batch(x.batch(), y.batch(), "GroupNorm::forward");
    stats.resize(x.batch());
    kernels::group_norm_forward<T, C, G>(x.data(), y.data(), stats.data(), weight.value.data(), bias.value.data(), ss,
                                        Silu, x.batch(), H * W, eps);
  }
};

/// GroupNorm then SiLU (the ResBlock's first normalisation and the output head).
template <class T, std::size_t H, std::size_t W, std::size_t C, std::size_t G>
using GroupNormSiLU = GroupNorm<T, H, W, C, G, true, false>;

/// SiLU(GroupNorm(x) * (1 + scale) + shift): the ResBlock's adaptive normalisation.
template <class T, std::size_t H, std::size_t W, std::size_t C, std::size_t G>
using AdaGroupNormSiLU = GroupNorm<T, H, W, C, G, true, true>;

}  // namespace diffuse::nn
