// The element-wise vocabulary: operators, math functions, where/clamp and the
// per-channel and per-item broadcasts. Each returns an unevaluated expression node.
//
//   y = silu(a * x + b);                 // a, b scalars; x a tensor
//   h = (h - per_channel(mean)) * per_channel(inv_std);
//   g = where(x > 0.f, g, 0.f);
#pragma once

#include <span>
#include <type_traits>
#include <vector>

#include "diffuse/core/expr.hpp"
#include "diffuse/core/functors.hpp"
#include "diffuse/core/tensor.hpp"

namespace diffuse {
namespace detail {

// The element type an operand contributes (void for a bare number).
template <class X>
struct operand_value {
  using type = void;
};
template <Operand X>
struct operand_value<X> {
  using type = typename decltype(as_expr(std::declval<const X&>()))::value_type;
};

template <class... X>
struct first_value;
template <class X, class... R>
struct first_value<X, R...> {
  using head = typename operand_value<X>::type;
  using type = std::conditional_t<std::is_void_v<head>, typename first_value<R...>::type, head>;
};
template <>
struct first_value<> {
  using type = void;
};

// An operand as a node; numbers become Scalar nodes of the expression's element type.
template <class T, class X>
auto node(const X& x) {
  if constexpr (Arithmetic<X>) return expr::Scalar<T>{{}, static_cast<T>(x)};
  else return as_expr(x);
}

template <class F, class... X>
auto make_map(F f, const X&... x) {
  using T = typename first_value<X...>::type;
  return expr::Map<F, decltype(node<T>(x))...>(f, node<T>(x)...);
}

}  // namespace detail

/// At least one tensor or expression, the rest tensors, expressions or numbers.
template <class... X>
concept ElementwiseArgs = ((Operand<X> || Arithmetic<X>) && ...) && (Operand<X> || ...);

#define DIFFUSE_BINARY_OPERATOR(op, F)                      \
  template <class A, class B>                               \
    requires ElementwiseArgs<A, B>                          \
  auto operator op(const A& a, const B& b) {                \
    return detail::make_map(fn::F{}, a, b);                 \
  }
///@{
/// Element-wise `a + b`, `a - b`, `a * b`, `a / b`, and comparisons that give 1 where
/// true and 0 where false; a number operand is broadcast.
DIFFUSE_BINARY_OPERATOR(+, Add)
DIFFUSE_BINARY_OPERATOR(-, Sub)
DIFFUSE_BINARY_OPERATOR(*, Mul)
DIFFUSE_BINARY_OPERATOR(/, Div)
DIFFUSE_BINARY_OPERATOR(<, Less)
DIFFUSE_BINARY_OPERATOR(<=, LessEqual)
DIFFUSE_BINARY_OPERATOR(>, Greater)
DIFFUSE_BINARY_OPERATOR(>=, GreaterEqual)
///@}
#undef DIFFUSE_BINARY_OPERATOR

/// Element-wise `-a`.
template <Operand A>
auto operator-(const A& a) {
  return detail::make_map(fn::Neg{}, a);
}

#define DIFFUSE_UNARY_FUNCTION(name, F)                     \
  template <Operand A>                                      \
  auto name(const A& a) {                                   \
    return detail::make_map(fn::F{}, a);                    \
  }
///@{
/// Element-wise exp, log, sqrt, rsqrt (exact 1 / sqrt), tanh, sigmoid, silu
/// (x sigmoid(x)), relu, square and abs (the functors of diffuse::fn).
DIFFUSE_UNARY_FUNCTION(exp, Exp)
DIFFUSE_UNARY_FUNCTION(log, Log)
DIFFUSE_UNARY_FUNCTION(sqrt, Sqrt)
DIFFUSE_UNARY_FUNCTION(rsqrt, Rsqrt)
DIFFUSE_UNARY_FUNCTION(tanh, Tanh)
DIFFUSE_UNARY_FUNCTION(sigmoid, Sigmoid)
DIFFUSE_UNARY_FUNCTION(silu, Silu)
DIFFUSE_UNARY_FUNCTION(relu, Relu)
DIFFUSE_UNARY_FUNCTION(square, Square)
DIFFUSE_UNARY_FUNCTION(abs, Abs)
///@}
#undef DIFFUSE_UNARY_FUNCTION

///@{
/// Element-wise minimum / maximum of two operands.
template <class A, class B>
  requires ElementwiseArgs<A, B>
auto minimum(const A& a, const B& b) {
  return detail::make_map(fn::Minimum{}, a, b);
}
template <class A, class B>
  requires ElementwiseArgs<A, B>
auto maximum(const A& a, const B& b) {
  return detail::make_map(fn::Maximum{}, a, b);
}
///@}

/// `a` where `cond` is non-zero, `b` elsewhere.
template <class C, class A, class B>
  requires ElementwiseArgs<C, A, B>
auto where(const C& cond, const A& a, const B& b) {
  return detail::make_map(fn::Where{}, cond, a, b);
}

/// `x` limited to [lo, hi].
template <class X, class L, class H>
  requires ElementwiseArgs<X, L, H>
auto clamp(const X& x, const L& lo, const H& hi) {
  return detail::make_map(fn::Clamp{}, x, lo, hi);
}

/// A vector of C values (a Tensor or view of Shape<C>) broadcast along the channel
/// (last) axis of the other operands.
template <TensorLike V>
auto per_channel(const V& v) {
  using S = typename V::shape;
  static_assert(S::rank == 1 && !S::dynamic_batch, "diffuse::per_channel: expects a tensor of shape Shape<C> (C static)");
  return expr::ChannelVector<typename V::value_type, S::extents[0]>(v.data());
}

///@{
/// One value per item of a batch of shape S (Shape<dyn, ...>), broadcast over the item:
/// `out = per_item<Batch>(c_skip) * x + per_item<Batch>(c_out) * f` scales image i of x
/// by c_skip[i]. `v` has one value per item (its size is the batch); it must stay alive
/// until the expression is assigned.
template <class S, class T>
auto per_item(std::span<const T> v) {
  static_assert(S::dynamic_batch, "diffuse::per_item: expects a batch shape Shape<dyn, ...>");
  return expr::ItemVector<T, S>{{}, v.data(), v.size()};
}
template <class S, class T>
auto per_item(std::span<T> v) {
  return per_item<S>(std::span<const T>(v));
}
template <class S, class T>
auto per_item(const std::vector<T>& v) {
  return per_item<S>(std::span<const T>(v));
}
/// A temporary vector would be gone before the expression is evaluated.
template <class S, class T>
auto per_item(std::vector<T>&& v) = delete;
///@}

#define DIFFUSE_COMPOUND_ASSIGN(op, F)                                       \
  template <TensorLike Y, class E>                                           \
    requires(Operand<E> || Arithmetic<E>)                                    \
  decltype(auto) operator op(Y& y, const E& e) {                             \
    y = detail::make_map(fn::F{}, y, e);                                     \
    return y;                                                                \
  }                                                                          \
  template <class T, class S, class E>                                       \
    requires(Operand<E> || Arithmetic<E>)                                    \
  const TensorView<T, S>& operator op(const TensorView<T, S>& y, const E& e) { \
    y = detail::make_map(fn::F{}, y, e);                                     \
    return y;                                                                \
  }
///@{
/// `y += e`, `y -= e`, `y *= e`, `y /= e` for a tensor or view y: evaluates `y op e`
/// into y in one pass and returns y.
DIFFUSE_COMPOUND_ASSIGN(+=, Add)
DIFFUSE_COMPOUND_ASSIGN(-=, Sub)
DIFFUSE_COMPOUND_ASSIGN(*=, Mul)
DIFFUSE_COMPOUND_ASSIGN(/=, Div)
///@}
#undef DIFFUSE_COMPOUND_ASSIGN

}  // namespace diffuse
