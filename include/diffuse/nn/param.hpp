// Parameters of the layers: a value tensor and its gradient, and how they are named and
// visited.
//
// Every layer owns its parameters as Param<T, S> members (value and grad, both shaped
// S) and lists them through `visit_params(f, name)`, which calls f(ParamRef) for each
// one in a fixed order (the order of the PyTorch model's state_dict). The public
// `for_each_param(f)` of a model adapts that to f(name, value, grad). Names are built
// in a fixed-size buffer, so visiting allocates nothing (optimisers visit every step).
//
// Not here: initialisation (init.hpp), PyTorch state dicts (state_dict.hpp), optimisers
// (optim/), checkpoints (train/), the layers themselves.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <memory>
#include <span>
#include <stdexcept>
#include <string_view>
#include <type_traits>

#include "diffuse/core/tensor.hpp"

namespace diffuse::nn {

/// How a parameter's elements are laid out relative to PyTorch's tensor of the same name.
enum class ParamLayout {
  same,       ///< identical element order (biases, GroupNorm, Linear [out][in])
  conv_hwio,  ///< diffuse [k][k][Cin][Cout]; PyTorch Conv2d.weight is [Cout][Cin][k][k]
};

/// One parameter as a visitor sees it.
template <class T>
struct ParamRef {
  std::string_view name;           ///< PyTorch state_dict name, e.g. "enc.1.conv0.weight"
  std::span<T> value;              ///< the parameter
  std::span<T> grad;               ///< its gradient, same size
  ParamLayout layout;              ///< element order relative to PyTorch
  std::array<std::size_t, 4> torch_shape;  ///< PyTorch's shape (first torch_rank entries)
  std::size_t torch_rank;  ///< number of dimensions of PyTorch's tensor (1 to 4)
};

/// A non-owning reference to any callable `f(const ParamRef<T>&)`. A network's
/// visit_params() passes this one type down to its layers, so their visiting code is
/// compiled once per element type, not once for every visitor lambda of the program (the
/// optimiser's, the EMA's, each checkpoint reader and writer's): a large share of a
/// program's compile time otherwise. One indirect call per parameter tensor.
template <class T>
class ParamVisitor {
 public:
  /// Refers to f, which must outlive the visitor.
  template <class F>
    requires(!std::same_as<std::remove_cvref_t<F>, ParamVisitor>)
  ParamVisitor(F& f) noexcept  // NOLINT: implicit, like std::function_ref
      : object_(const_cast<std::remove_const_t<F>*>(std::addressof(f))), call_([](void* o, const ParamRef<T>& p) { (*static_cast<F*>(o))(p); }) {}
  /// Calls f(p).
  void operator()(const ParamRef<T>& p) const { call_(object_, p); }

 private:
  void* object_;
  void (*call_)(void*, const ParamRef<T>&);
};

/// A parameter tensor with its gradient.
template <class T, class S>
struct Param {
  static_assert(!S::dynamic_batch, "diffuse::nn::Param: parameter shapes are fully static");
  static constexpr std::size_t size = S::static_size;  ///< Number of elements.
  Tensor<T, S> value;  ///< S
  Tensor<T, S> grad;   ///< S, accumulated by backward (+=)

  std::span<T> values() noexcept { return {value.data(), size}; }  ///< The values as a flat span.
  std::span<T> grads() noexcept { return {grad.data(), size}; }  ///< The gradients as a flat span.
  /// Sets the gradient to zero (where it lives: on the GPU while that is the device).
  void zero_grad() { grad = T(0); }
};

/// Dotted parameter names built in place (no allocation): push a part, visit, pop.
class ParamName {
 public:
  /// Appends ".part" (or "part" at the start); returns the length to restore with pop().
  std::size_t push(std::string_view part) {
    const std::size_t old = len_;
    if (len_ && len_ < cap) buf_[len_++] = '.';
    if (len_ + part.size() > cap) throw std::length_error("diffuse::nn::ParamName: name too long");
    for (char c : part) buf_[len_++] = c;
    return old;
  }
  /// Appends ".<index>" (ModuleList entries).
  std::size_t push(std::size_t index) {
    char digits[24];
    std::size_t n = 0;
    do {
      digits[n++] = static_cast<char>('0' + index % 10);
      index /= 10;
    } while (index);
    char part[24];
    for (std::size_t i = 0; i < n; ++i) part[i] = digits[n - 1 - i];
    return push(std::string_view(part, n));
  }
  /// Restores the length push() returned (drops the parts pushed since).
  void pop(std::size_t old) noexcept { len_ = old; }
  /// The name so far (valid until the next push or pop).
  std::string_view view() const noexcept { return {buf_.data(), len_}; }

 private:
  static constexpr std::size_t cap = 254;
  std::array<char, cap + 2> buf_{};
  std::size_t len_ = 0;
};

namespace detail {

/// Calls f(ParamRef) for `p` named "<prefix>.<part>".
template <class T, class S, class F>
void visit_param(F& f, ParamName& name, std::string_view part, Param<T, S>& p,
                 ParamLayout layout = ParamLayout::same) {
  const std::size_t old = name.push(part);
  ParamRef<T> ref{name.view(), p.values(), p.grads(), layout, {}, 0};
  if (layout == ParamLayout::conv_hwio) {
    // [k][k][Cin][Cout] -> PyTorch [Cout][Cin][k][k]
    ref.torch_shape = {S::extents[3], S::extents[2], S::extents[0], S::extents[1]};
    ref.torch_rank = 4;
  } else {
    for (std::size_t i = 0; i < S::rank; ++i) ref.torch_shape[i] = S::extents[i];
    ref.torch_rank = S::rank;
  }
  f(ref);
  name.pop(old);
}

/// Visits the parameters of a sub-layer under "<prefix>.<part>".
template <class Layer, class F>
void visit_child(F& f, ParamName& name, std::string_view part, Layer& layer) {
  const std::size_t old = name.push(part);
  layer.visit_params(f, name);
  name.pop(old);
}

}  // namespace detail

/// Adapts a model's visit_params to the optimiser contract
/// f(std::string_view name, std::span<T> value, std::span<T> grad).
template <class Model, class F>
void for_each_param_of(Model& m, F&& f) {
  ParamName name;
  auto adapt = [&](const auto& ref) { f(ref.name, ref.value, ref.grad); };
  m.visit_params(adapt, name);
}

/// Number of parameters of a model (visits them).
template <class Model>
std::size_t count_params(Model& m) {
  std::size_t n = 0;
  for_each_param_of(m, [&](std::string_view, auto v, auto) { n += v.size(); });
  return n;
}

/// Sets every gradient of a model to zero.
template <class Model>
void zero_grad_of(Model& m) {
  for_each_param_of(m, [](std::string_view, auto, auto g) {
    using T = typename decltype(g)::element_type;
    TensorView<T, Shape<dyn>>(g.data(), g.size()) = T(0);  // an expression: on the GPU there
  });
}

}  // namespace diffuse::nn
