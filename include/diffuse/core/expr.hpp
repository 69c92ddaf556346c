// Expression templates: the lazy element-wise nodes.
//
// An expression is a tree of nodes that each know their element type, their shape
// and how to produce element i (`at(i)`) or the simd batch starting at element i
// (`load(i)`, i a multiple of the simd width). Nothing is computed until an
// expression is assigned to a tensor (see assign.hpp), which then evaluates the whole
// tree in one pass, after calling `prepare()` on its own copy of the tree (where a node
// may read what it needs once, at evaluation time, not when the tree was built).
//
// Leaves: Ref (a tensor's storage), Scalar (a constant), ChannelVector (a
// per-channel vector broadcast along the last, channel axis) and ItemVector (one value
// per item of the batch, e.g. per image, broadcast over the item). Inner nodes: Map<F, ...>
// applies a function object from functors.hpp to its children.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "diffuse/core/device.hpp"
#include "diffuse/core/error.hpp"
#include "diffuse/core/shape.hpp"
#include "diffuse/core/simd.hpp"

namespace diffuse {

/// Shape tag of a per-channel vector of length C broadcast along the last axis.
template <std::size_t C>
struct PerChannel {
  static constexpr std::size_t channels = C;  ///< The vector's length C.
  static constexpr std::size_t rank = 0;      ///< No axes of its own: it broadcasts.
};

/// Base of every expression node; lets the operators recognise their operands.
///
/// A node provides `value_type` (its element type), `shape` (a Shape, or PerChannel),
/// `batch()` (its run-time leading extent, expr::any_batch when it broadcasts),
/// `prepare()` (called once on the copy of the tree that is evaluated), `at(i)` (element
/// i), `load(i)` (the simd batch from element i, i a multiple of the simd width) and
/// `unsafe_alias(begin, end)` (true when evaluating into [begin, end) would read
/// elements already overwritten) and `device_copy(staging)` (the node with its storage
/// addresses replaced by device addresses, for evaluation on the GPU).
struct ExprNode {};

/// An expression node type (derived from ExprNode).
template <class E>
concept Expression = std::is_base_of_v<ExprNode, E>;

/// Anything that turns into an expression: a node, or a Tensor / TensorView (which
/// provide `expr()`).
template <class X>
concept TensorLike = requires(const X& x) {
  { x.expr() } -> Expression;
};

/// What element-wise operations take: an expression, a tensor or a view.
template <class X>
concept Operand = Expression<X> || TensorLike<X>;

/// A built-in number type (broadcast as a constant when combined with an Operand).
template <class X>
concept Arithmetic = std::is_arithmetic_v<X>;

namespace detail {

template <std::size_t C, class S, bool Ok = (channels_of<S> == C)>
struct check_channel_broadcast {
  static_assert(Ok,
                "diffuse: per-channel vector length differs from the channel (last) extent "
                "(see the C and Shape<...> arguments)");
  static constexpr bool value = Ok;
};

template <class A, class B>
struct check_same_type {
  static_assert(std::is_same_v<A, B>, "diffuse: operands have different element types");
  static constexpr bool value = true;
};

// The shape of the result of combining two operand shapes (Shape<> is a scalar).
template <class A, class B>
struct common_shape;

template <std::size_t... D>
struct common_shape<Shape<>, Shape<D...>> {
  using type = Shape<D...>;
};
template <std::size_t... D>
  requires(sizeof...(D) > 0)
struct common_shape<Shape<D...>, Shape<>> {
  using type = Shape<D...>;
};
template <std::size_t C>
struct common_shape<Shape<>, PerChannel<C>> {
  using type = PerChannel<C>;
};
template <std::size_t C>
struct common_shape<PerChannel<C>, Shape<>> {
  using type = PerChannel<C>;
};
template <std::size_t C, std::size_t C2>
struct common_shape<PerChannel<C>, PerChannel<C2>> {
  static_assert(C == C2, "diffuse: per-channel vectors of different lengths");
  using type = PerChannel<C>;
};
template <std::size_t C, std::size_t... D>
  requires(sizeof...(D) > 0)
struct common_shape<PerChannel<C>, Shape<D...>> {
  static_assert(check_channel_broadcast<C, Shape<D...>>::value);
  using type = Shape<D...>;
};
template <std::size_t C, std::size_t... D>
  requires(sizeof...(D) > 0)
struct common_shape<Shape<D...>, PerChannel<C>> {
  static_assert(check_channel_broadcast<C, Shape<D...>>::value);
  using type = Shape<D...>;
};
template <std::size_t... A, std::size_t... B>
  requires(sizeof...(A) > 0 && sizeof...(B) > 0)
struct common_shape<Shape<A...>, Shape<B...>> {
  static_assert(check_same_shape<Shape<A...>, Shape<B...>>::value);
  // A dynamic batch on one side takes the other side's static batch.
  template <std::size_t... I>
  static auto merge(std::index_sequence<I...>)
      -> Shape<(Shape<A...>::extents[I] == dyn ? Shape<B...>::extents[I]
                                               : Shape<A...>::extents[I])...>;
  using type = decltype(merge(std::make_index_sequence<sizeof...(A)>{}));
};

template <class... S>
struct common_shape_of;
template <class S>
struct common_shape_of<S> {
  using type = S;
};
template <class S, class T, class... R>
struct common_shape_of<S, T, R...> {
  using type = typename common_shape_of<typename common_shape<S, T>::type, R...>::type;
};

}  // namespace detail

/// The nodes of element-wise expressions (see ExprNode for their interface).
namespace expr {

/// The run-time leading extent of a node that broadcasts (scalars, channel vectors).
inline constexpr std::size_t any_batch = dyn;

/// Reads a tensor's storage.
template <class T, class S>
struct Ref : ExprNode {
  ///@{
  /// The node interface (see ExprNode).
  using value_type = T;
  using shape = S;
  ///@}
  const T* ptr;       ///< The first element.
  std::size_t items;  ///< The leading extent.

  ///@{
  /// The node interface (see ExprNode).
  std::size_t batch() const noexcept { return items; }
  void prepare() noexcept {}
  T at(std::size_t i) const noexcept { return ptr[i]; }
  simd<T> load(std::size_t i) const noexcept { return simd<T>::load_unaligned(ptr + i); }
  // Reading the destination itself element for element is safe (x = x * 2 + x);
  // reading it shifted or reshaped to another length is not.
  bool unsafe_alias(const void* begin, const void* end) const noexcept {
    const T* b = static_cast<const T*>(begin);
    const T* e = static_cast<const T*>(end);
    const T* mine_end = ptr + shape_size<S>(items);
    bool overlaps = ptr < e && b < mine_end;
    return overlaps && !(ptr == b && mine_end == e);
  }
  Ref device_copy(detail::DeviceStaging& staging) const { return {{}, staging(ptr, shape_size<S>(items)), items}; }
  ///@}
};

/// A constant.
template <class T>
struct Scalar : ExprNode {
  ///@{
  /// The node interface (see ExprNode).
  using value_type = T;
  using shape = Shape<>;
  ///@}
  T value;  ///< The constant.

  ///@{
  /// The node interface (see ExprNode).
  std::size_t batch() const noexcept { return any_batch; }
  void prepare() noexcept {}
  T at(std::size_t) const noexcept { return value; }
  simd<T> load(std::size_t) const noexcept { return simd<T>(value); }
  bool unsafe_alias(const void*, const void*) const noexcept { return false; }
  Scalar device_copy(detail::DeviceStaging&) const { return *this; }
  ///@}
};

/// A vector of C values broadcast along the last (channel) axis: element i of the
/// result takes value[i % C].
template <class T, std::size_t C>
struct ChannelVector : ExprNode {
  ///@{
  /// The node interface (see ExprNode).
  using value_type = T;
  using shape = PerChannel<C>;
  ///@}
  static constexpr std::size_t W = simd_width<T>;  ///< Lanes of simd<T>.
  const T* ptr;                                    ///< The C values.
  /// The lanes of every simd batch when C divides W (every batch starting at a
  /// multiple of W sees the same lanes): prepare() reads them once per evaluation.
  alignas(tensor_alignment) std::array<T, (W % C == 0) ? W : 1> pattern{};

  /// Broadcasts the C values at `p`, which must outlive the expression.
  explicit ChannelVector(const T* p) : ptr(p) {}
  ///@{
  /// The node interface (see ExprNode).
  void prepare() noexcept {
    if constexpr (W % C == 0)
      for (std::size_t l = 0; l < W; ++l) pattern[l] = ptr[l % C];
  }
  std::size_t batch() const noexcept { return any_batch; }
  T at(std::size_t i) const noexcept { return ptr[i % C]; }
  simd<T> load(std::size_t i) const noexcept {
    if constexpr (C % W == 0) {
      return simd<T>::load_unaligned(ptr + i % C);  // i % W == 0, so no wrap inside
    } else if constexpr (W % C == 0) {
      return simd<T>::load_aligned(pattern.data());
    } else {
      alignas(tensor_alignment) T lanes[W];
      std::size_t c = i % C;
      for (std::size_t l = 0; l < W; ++l) {
        lanes[l] = ptr[c];
        c = c + 1 == C ? 0 : c + 1;
      }
      return simd<T>::load_aligned(lanes);
    }
  }
  bool unsafe_alias(const void* begin, const void* end) const noexcept {
    const T* b = static_cast<const T*>(begin);
    const T* e = static_cast<const T*>(end);
    return ptr < e && b < ptr + C;
  }
  ChannelVector device_copy(detail::DeviceStaging& staging) const {
    ChannelVector v = *this;
    v.ptr = staging(ptr, C);
    return v;
  }
  ///@}
};

/// One value per item of a batch of shape S (N items, N = the vector's length),
/// broadcast over the item: element i of the result takes value[i / S::item_size].
template <class T, class S>
struct ItemVector : ExprNode {
  ///@{
  /// The node interface (see ExprNode).
  using value_type = T;
  using shape = S;
  ///@}
  static constexpr std::size_t W = simd_width<T>;  ///< Lanes of simd<T>.
  static constexpr std::size_t K = S::item_size;   ///< Elements per item.
  const T* ptr;                                    ///< The N values.
  std::size_t items;                               ///< N.

  ///@{
  /// The node interface (see ExprNode).
  std::size_t batch() const noexcept { return items; }
  void prepare() noexcept {}
  T at(std::size_t i) const noexcept { return ptr[i / K]; }
  simd<T> load(std::size_t i) const noexcept {
    if constexpr (K % W == 0) {
      return simd<T>(ptr[i / K]);  // a whole batch lies inside one item
    } else {
      alignas(tensor_alignment) T lanes[W];
      for (std::size_t l = 0; l < W; ++l) lanes[l] = ptr[(i + l) / K];
      return simd<T>::load_aligned(lanes);
    }
  }
  bool unsafe_alias(const void* begin, const void* end) const noexcept {
    const T* b = static_cast<const T*>(begin);
    const T* e = static_cast<const T*>(end);
    return ptr < e && b < ptr + items;
  }
  ItemVector device_copy(detail::DeviceStaging& staging) const { return {{}, staging(ptr, items), items}; }
  ///@}
};

/// F applied element-wise to the children.
template <class F, class... Args>
struct Map : ExprNode {
  ///@{
  /// The node interface (see ExprNode): the children's element type and common shape.
  using value_type = typename std::tuple_element_t<0, std::tuple<Args...>>::value_type;
  using shape = typename detail::common_shape_of<typename Args::shape...>::type;
  ///@}
  static_assert((detail::check_same_type<value_type, typename Args::value_type>::value && ...));

  F f;                       ///< The function object (see diffuse::fn).
  std::tuple<Args...> args;  ///< The children.
  std::size_t items;         ///< The children's common batch (any_batch if none has one).

  /// f over the children; throws ShapeError when their run-time batches differ.
  Map(F fn, const Args&... a) : f(fn), args(a...), items(any_batch) {
    // Static extents were checked by common_shape; the batch is only known now.
    ((items = merge_batch(items, a.batch())), ...);
  }

  ///@{
  /// The node interface (see ExprNode).
  std::size_t batch() const noexcept { return items; }
  void prepare() {
    std::apply([](Args&... a) { (a.prepare(), ...); }, args);
  }
  value_type at(std::size_t i) const { return at_each(i, std::index_sequence_for<Args...>{}); }
  simd<value_type> load(std::size_t i) const {
    return std::apply([&](const Args&... a) { return f.simd(a.load(i)...); }, args);
  }
  bool unsafe_alias(const void* begin, const void* end) const {
    return std::apply([&](const Args&... a) { return (a.unsafe_alias(begin, end) || ...); }, args);
  }
  ///@}

  /// This tree with every storage address replaced by its device address (see device.hpp).
  Map device_copy(detail::DeviceStaging& staging) const {
    Map m = *this;
    m.args = std::apply([&](const Args&... a) { return std::tuple<Args...>(a.device_copy(staging)...); }, args);
    return m;
  }

 private:
  // Not std::apply with a lambda: GCC 12's nvptx compiler fails on that inside simd loops.
  template <std::size_t... I>
  value_type at_each(std::size_t i, std::index_sequence<I...>) const {
    return f(std::get<I>(args).at(i)...);
  }
  static std::size_t merge_batch(std::size_t have, std::size_t next) {
    if (have == any_batch) return next;
    if (next == any_batch || next == have) return have;
    throw ShapeError("diffuse: operands have different batch sizes (" + std::to_string(have) +
                     " and " + std::to_string(next) + ")");
  }
};

}  // namespace expr
}  // namespace diffuse
