// Compile-time shapes.
//
// Shape<D...> lists the extents of a tensor, outermost first. Every extent is a
// compile-time constant except, optionally, the first one (the batch), which may be
// `dyn` and is then chosen at run time. Images are NHWC: Shape<dyn, H, W, C>.
//
// Shape relations (same shape, broadcastable, reshape-compatible) are named
// predicates here; the operations static_assert on them through detail::check_*
// templates, so that a compiler error shows both shapes in its "required from" line.
#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <type_traits>

namespace diffuse {

/// The one extent that may be chosen at run time: the leading (batch) extent.
inline constexpr std::size_t dyn = std::dynamic_extent;

/// The extents D... of a tensor, outermost first; only the first may be `dyn`.
template <std::size_t... D>
struct Shape {
  static constexpr std::size_t rank = sizeof...(D);                ///< Number of axes.
  static constexpr std::array<std::size_t, rank> extents{D...};  ///< D..., `dyn` for a dynamic batch.

  /// True when the leading extent is chosen at run time.
  static constexpr bool dynamic_batch = rank > 0 && extents[0] == dyn;

  /// Elements in one item of the leading axis (a whole image for NHWC).
  static constexpr std::size_t item_size = [] {
    std::size_t n = 1;
    for (std::size_t i = 1; i < rank; ++i) n *= extents[i];
    return n;
  }();

  /// Elements in the whole tensor; `dyn` when the batch is dynamic.
  static constexpr std::size_t static_size =
      rank == 0 ? 1 : (dynamic_batch ? dyn : extents[0] * item_size);

  /// Extent of axis Axis (`dyn` for a dynamic batch).
  template <std::size_t Axis>
  static constexpr std::size_t extent = extents[Axis];

  static_assert([] {
    for (std::size_t i = 1; i < rank; ++i)
      if (extents[i] == dyn) return false;
    return true;
  }(), "diffuse::Shape: only the leading (batch) extent may be dyn");
  static_assert([] {
    for (std::size_t i = 0; i < rank; ++i)
      if (extents[i] == 0) return false;
    return true;
  }(), "diffuse::Shape: extents must be positive");
};

/// True when T is a Shape<...>.
template <class T>
inline constexpr bool is_shape_v = false;
/// \copydoc is_shape_v
template <std::size_t... D>
inline constexpr bool is_shape_v<Shape<D...>> = true;

/// Number of elements of a tensor of shape S holding `batch` items (batch is used
/// only when the leading extent is dyn).
template <class S>
constexpr std::size_t shape_size(std::size_t batch) noexcept {
  if constexpr (S::rank == 0) return 1;
  else if constexpr (S::dynamic_batch) return batch * S::item_size;
  else return S::static_size;
}

/// Two shapes agree when they have the same rank and every extent is equal or dyn.
template <class A, class B>
inline constexpr bool shapes_match = [] {
  if constexpr (A::rank != B::rank) {
    return false;
  } else {
    for (std::size_t i = 0; i < A::rank; ++i)
      if (A::extents[i] != B::extents[i] && A::extents[i] != dyn && B::extents[i] != dyn)
        return false;
    return true;
  }
}();

/// A reshape keeps the element count: both static with equal totals, or both with a
/// dynamic batch and equal item sizes.
template <class From, class To>
inline constexpr bool reshape_compatible =
    (!From::dynamic_batch && !To::dynamic_batch && From::static_size == To::static_size) ||
    (From::dynamic_batch && To::dynamic_batch && From::item_size == To::item_size);

/// Last extent (the channel axis for NHWC activations).
template <class S>
inline constexpr std::size_t channels_of = S::rank == 0 ? 1 : S::extents[S::rank - 1];

/// Human-readable form, e.g. "(N, 28, 28, 1)" with N for a dynamic batch.
template <class S>
std::string shape_string() {
  std::string s = "(";
  for (std::size_t i = 0; i < S::rank; ++i) {
    if (i) s += ", ";
    s += S::extents[i] == dyn ? std::string("N") : std::to_string(S::extents[i]);
  }
  return s + ")";
}

namespace detail {

// These exist to be instantiated with the two shapes: when the check fails, g++ and
// clang print "required from check_same_shape<Shape<...>, Shape<...>, false>".
template <class A, class B, bool Ok = shapes_match<A, B>>
struct check_same_shape {
  static_assert(Ok, "diffuse: operand shapes differ (see the two Shape<...> arguments)");
  static constexpr bool value = Ok;
};

template <class From, class To, bool Ok = reshape_compatible<From, To>>
struct check_reshape {
  static_assert(Ok,
                "diffuse: reshape changes the number of elements (or mixes a dynamic and a "
                "static batch; see the two Shape<...> arguments)");
  static constexpr bool value = Ok;
};

// Drops the axes listed in Axes from S (used by reductions along axes).
template <class S, class Seq, std::size_t... Axes>
struct drop_axes_impl;
template <class S, std::size_t... I, std::size_t... Axes>
struct drop_axes_impl<S, std::index_sequence<I...>, Axes...> {
  template <std::size_t Axis>
  static constexpr bool dropped = ((Axis == Axes) || ...);
  static constexpr std::size_t kept = ((dropped<I> ? 0 : 1) + ... + 0);
  static constexpr std::array<std::size_t, kept> extents = [] {
    std::array<std::size_t, kept> out{};
    std::size_t k = 0;
    ((dropped<I> ? void() : void(out[k++] = S::extents[I])), ...);
    return out;
  }();
  template <class Seq2>
  struct make;
  template <std::size_t... K>
  struct make<std::index_sequence<K...>> {
    using type = Shape<extents[K]...>;
  };
  using type = typename make<std::make_index_sequence<kept>>::type;
};

}  // namespace detail

/// S with the axes Axes... removed, e.g. drop_axes<Shape<dyn, 7, 7, 64>, 1, 2> is
/// Shape<dyn, 64>.
template <class S, std::size_t... Axes>
using drop_axes = typename detail::drop_axes_impl<S, std::make_index_sequence<S::rank>, Axes...>::type;

}  // namespace diffuse
