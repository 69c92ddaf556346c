// Reductions: sum, mean, max and sum of squares, over all elements or along axes.
//
//   float s = sum(x);                        // everything (x may be an expression)
//   auto per_channel_sum = sum<0, 1, 2>(x);  // (N, H, W, C) -> (C)
//   auto per_image_max = max<1, 2, 3>(x);    // (N, H, W, C) -> (N)
//   sum<1, 3>(x.reshape<Shape<dyn, H * W, G, C / G>>(), stats);  // per-group, into `stats`
//
// Every reduction adds in an order fixed by the sizes alone, so the result is
// bit-identical for any thread count. Full reductions of float accumulate chunks in
// simd float lanes and combine the chunks in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <array>
#include <cstddef>
#include <limits>
#include <string>

#include "diffuse/core/expr.hpp"
#include "diffuse/core/functors.hpp"
#include "diffuse/core/ops.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/core/tensor.hpp"

namespace diffuse {
namespace detail {

struct SumReduce {
  template <class T> static T identity() { return T(0); }
  template <class T> static T combine(T a, T b) { return a + b; }
  template <class B> static B combine_simd(const B& a, const B& b) { return a + b; }
  template <class T> static T lanes(const simd<T>& v) { return reduce_add(v); }
};

struct MaxReduce {
  template <class T> static T identity() { return -std::numeric_limits<T>::infinity(); }
  // NaN wins, so that a NaN anywhere shows in the result.
  template <class T> static T combine(T a, T b) { return (b > a || std::isnan(b)) ? b : a; }
  template <class B> static B combine_simd(const B& a, const B& b) {
    return xsimd::select((b > a) || xsimd::isnan(b), b, a);
  }
  template <class T> static T lanes(const simd<T>& v) {
    alignas(tensor_alignment) T l[simd<T>::size];
    v.store_aligned(l);
    T m = l[0];
    for (std::size_t i = 1; i < simd<T>::size; ++i) m = combine(m, l[i]);
    return m;
  }
};

// Reduces e over all n elements. Chunk boundaries depend on n alone.
template <class Op, Expression E>
typename E::value_type reduce_all(const E& expression, std::size_t n) {
  E e = expression;  // a copy that may read what it needs now (see expr.hpp)
  e.prepare();
  using T = typename E::value_type;
  using Acc = std::conditional_t<std::is_same_v<T, float>, double, T>;
  constexpr std::size_t W = simd_width<T>;
  constexpr std::size_t max_chunks = 1024;
  const std::size_t min_chunk = std::size_t{4096};
  std::size_t chunk = std::max(min_chunk, (n + max_chunks - 1) / max_chunks);
  chunk = (chunk + 4 * W - 1) / (4 * W) * (4 * W);
  const std::size_t chunks = (n + chunk - 1) / chunk;
  std::array<Acc, max_chunks> partial;
  const int threads = threads_for(n);
  parallel_for(static_cast<std::ptrdiff_t>(chunks), threads, [&](std::ptrdiff_t c) {
    const std::size_t begin = static_cast<std::size_t>(c) * chunk;
    const std::size_t end = std::min(n, begin + chunk);
    // Four independent accumulators hide the add latency.
    simd<T> a0(Op::template identity<T>()), a1 = a0, a2 = a0, a3 = a0;
    std::size_t i = begin;
    for (; i + 4 * W <= end; i += 4 * W) {
      a0 = Op::combine_simd(a0, e.load(i));
      a1 = Op::combine_simd(a1, e.load(i + W));
      a2 = Op::combine_simd(a2, e.load(i + 2 * W));
      a3 = Op::combine_simd(a3, e.load(i + 3 * W));
    }
    for (; i + W <= end; i += W) a0 = Op::combine_simd(a0, e.load(i));
    T r = Op::lanes(Op::combine_simd(Op::combine_simd(a0, a1), Op::combine_simd(a2, a3)));
    for (; i < end; ++i) r = Op::combine(r, e.at(i));
    partial[static_cast<std::size_t>(c)] = static_cast<Acc>(r);
  });
  Acc total = static_cast<Acc>(Op::template identity<T>());
  for (std::size_t c = 0; c < chunks; ++c) total = Op::combine(total, partial[c]);
  return static_cast<T>(total);
}

template <Operand X>
std::size_t element_count(const X& x) {
  auto e = as_expr(x);
  using S = typename decltype(e)::shape;
  static_assert(S::rank >= 1, "diffuse: a reduction needs a tensor operand");
  return shape_size<S>(e.batch());
}

// Reduces `in` (shape S) along Axes into `out` (shape S without Axes). The input is
// read in memory order; adjacent axes of the same kind (kept or reduced) are merged,
// and the innermost merged axis runs in simd.
template <std::size_t... Axes>
inline constexpr bool distinct_axes = [] {
  constexpr std::size_t a[] = {Axes..., 0};
  for (std::size_t i = 0; i < sizeof...(Axes); ++i)
    for (std::size_t j = i + 1; j < sizeof...(Axes); ++j)
      if (a[i] == a[j]) return false;
  return true;
}();

template <class Op, class S, std::size_t... Axes, class T>
void reduce_axes(const T* in, std::size_t batch, T* out) {
  static_assert(distinct_axes<Axes...>, "diffuse: a reduction lists the same axis twice");
  constexpr std::size_t rank = S::rank;
  constexpr std::array<bool, rank> reduced = [] {
    std::array<bool, rank> r{};
    ((r[Axes] = true), ...);
    return r;
  }();
  static_assert(((Axes < rank) && ...), "diffuse: reduction axis out of range");
  // Merge runs of axes.
  std::array<std::size_t, rank> ext{};
  std::array<bool, rank> red{};
  std::size_t dims = 0;
  for (std::size_t a = 0; a < rank; ++a) {
    std::size_t e = (a == 0) ? (S::dynamic_batch ? batch : S::extents[0]) : S::extents[a];
    if (dims > 0 && red[dims - 1] == reduced[a]) {
      ext[dims - 1] *= e;
    } else {
      ext[dims] = e;
      red[dims] = reduced[a];
      ++dims;
    }
  }
  // Output strides of the kept merged axes.
  std::array<std::size_t, rank> ostride{};
  std::size_t s = 1;
  for (std::size_t d = dims; d-- > 0;) {
    ostride[d] = red[d] ? 0 : s;
    if (!red[d]) s *= ext[d];
  }
  const std::size_t out_size = s;
  for (std::size_t i = 0; i < out_size; ++i) out[i] = Op::template identity<T>();

  const std::size_t inner = ext[dims - 1];
  const bool inner_reduced = red[dims - 1];
  std::size_t outer_total = 1;
  for (std::size_t d = 0; d + 1 < dims; ++d) outer_total *= ext[d];
  if (ext[0] == 0 || inner == 0) return;

  // One run of `inner` contiguous inputs at outer position `o`.
  auto run = [&](std::size_t o) {
    std::size_t rem = o, ooff = 0;
    for (std::size_t d = dims - 1; d-- > 0;) {
      ooff += (rem % ext[d]) * ostride[d];
      rem /= ext[d];
    }
    const T* src = in + o * inner;
    constexpr std::size_t W = simd_width<T>;
    if (inner_reduced) {
      simd<T> acc(Op::template identity<T>());
      std::size_t j = 0;
      for (; j + W <= inner; j += W) acc = Op::combine_simd(acc, simd<T>::load_unaligned(src + j));
      T r = Op::lanes(acc);
      for (; j < inner; ++j) r = Op::combine(r, src[j]);
      out[ooff] = Op::combine(out[ooff], r);
    } else {
      T* dst = out + ooff;
      std::size_t j = 0;
      for (; j + W <= inner; j += W)
        Op::combine_simd(simd<T>::load_unaligned(dst + j), simd<T>::load_unaligned(src + j)).store_unaligned(dst + j);
      for (; j < inner; ++j) dst[j] = Op::combine(dst[j], src[j]);
    }
  };

  // Threads split the first merged axis only when it is kept: each thread then owns
  // distinct outputs and adds in the same order as a single thread would.
  const std::size_t first = dims > 1 ? ext[0] : 1;
  const std::size_t per_first = outer_total / first;
  const int threads = dims > 1 && !red[0] ? threads_for(shape_size<S>(batch)) : 1;
  parallel_for(static_cast<std::ptrdiff_t>(first), threads, [&](std::ptrdiff_t f) {
    for (std::size_t k = 0; k < per_first; ++k) run(static_cast<std::size_t>(f) * per_first + k);
  });
}

template <class Op, std::size_t... Axes, TensorLike X, class O>
void reduce_into(const X& x, O&& out) {
  static_assert(sizeof...(Axes) > 0, "diffuse: a reduction into a tensor needs the axes to reduce, e.g. sum<1, 2>(x, out)");
  static_assert(distinct_axes<Axes...>, "diffuse: a reduction lists the same axis twice");
  using S = typename X::shape;
  using OS = drop_axes<S, Axes...>;
  static_assert(check_same_shape<OS, typename std::remove_cvref_t<O>::shape>::value);
  if constexpr (!((Axes == 0) || ...)) {
    if (out.batch() != x.batch())
      throw ShapeError("diffuse: reduction output batch " + std::to_string(out.batch()) +
                       " differs from input batch " + std::to_string(x.batch()));
  }
  reduce_axes<Op, S, Axes...>(x.data(), x.batch(), out.data());
}

template <class Op, std::size_t... Axes, TensorLike X>
auto reduce_new(const X& x) {
  using T = typename X::value_type;
  using OS = drop_axes<typename X::shape, Axes...>;
  static_assert(OS::rank >= 1, "diffuse: to reduce over every axis, call the reduction without axes");
  Tensor<T, OS> out = [&] {
    if constexpr (OS::dynamic_batch) return Tensor<T, OS>(x.batch());
    else return Tensor<T, OS>();
  }();
  reduce_into<Op, Axes...>(x, out.view());
  return out;
}

// Number of elements folded into each output of a reduction along Axes.
template <class S, std::size_t... Axes>
std::size_t reduced_count(std::size_t batch) {
  std::size_t n = 1;
  ((n *= (Axes == 0 && S::dynamic_batch) ? batch : S::extents[Axes]), ...);
  return n;
}

}  // namespace detail

/// Sum of all elements of an operand (tensor, view or expression), or with Axes, a new
/// tensor of sums along those axes.
template <std::size_t... Axes, Operand X>
auto sum(const X& x) {
  if constexpr (sizeof...(Axes) == 0) return detail::reduce_all<detail::SumReduce>(as_expr(x), detail::element_count(x));
  else return detail::reduce_new<detail::SumReduce, Axes...>(x);
}

/// Largest element (NaN if any element is NaN), or maxima along Axes.
template <std::size_t... Axes, Operand X>
auto max(const X& x) {
  if constexpr (sizeof...(Axes) == 0) return detail::reduce_all<detail::MaxReduce>(as_expr(x), detail::element_count(x));
  else return detail::reduce_new<detail::MaxReduce, Axes...>(x);
}

/// Sum of squared elements, or along Axes.
template <std::size_t... Axes, Operand X>
auto sum_squares(const X& x) {
  if constexpr (sizeof...(Axes) == 0) {
    return sum(square(x));
  } else {
    using T = typename X::value_type;
    Tensor<T, typename X::shape> sq(square(x));
    return sum<Axes...>(sq);
  }
}

/// Mean of all elements, or means along Axes.
template <std::size_t... Axes, Operand X>
auto mean(const X& x) {
  if constexpr (sizeof...(Axes) == 0) {
    using T = typename decltype(as_expr(x))::value_type;
    return sum(x) / static_cast<T>(detail::element_count(x));
  } else {
    auto s = sum<Axes...>(x);
    using T = typename X::value_type;
    s = s * (T(1) / static_cast<T>(detail::reduced_count<typename X::shape, Axes...>(x.batch())));
    return s;
  }
}

///@{
/// Sums / maxima along Axes into a caller-provided tensor or view `out` (no
/// allocation), whose shape is x's without those axes.
template <std::size_t... Axes, TensorLike X, class O>
  requires TensorLike<std::remove_cvref_t<O>>
void sum(const X& x, O&& out) {
  detail::reduce_into<detail::SumReduce, Axes...>(x, std::forward<O>(out));
}
template <std::size_t... Axes, TensorLike X, class O>
  requires TensorLike<std::remove_cvref_t<O>>
void max(const X& x, O&& out) {
  detail::reduce_into<detail::MaxReduce, Axes...>(x, std::forward<O>(out));
}
///@}

}  // namespace diffuse
