// Tensor<T, S> owns its elements; TensorView<T, S> borrows them.
//
// Both are contiguous, row-major (the last extent varies fastest) and shaped by
// S = Shape<...> at compile time; only the leading extent may be `dyn` and is then
// held at run time. Element-wise expressions assign into either one:
//
//   Tensor<float, Shape<dyn, 28, 28, 32>> y(batch);
//   y = silu(a * x + per_channel(b));        // one fused simd pass
//
// Views cost nothing to make: a range of items of the leading axis (`items`), one
// item (`item`), or the same elements under another shape (`reshape`, checked at
// compile time). Assigning to a view writes through to the viewed storage.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/core/assign.hpp"
#include "diffuse/core/expr.hpp"
#include "diffuse/core/shape.hpp"

namespace diffuse {

template <class T, class S>
class TensorView;

namespace detail {

// S without its leading axis, and S with its leading axis made dynamic.
template <class S>
struct shape_tail;
template <std::size_t D0, std::size_t... D>
struct shape_tail<Shape<D0, D...>> {
  using item = Shape<D...>;
  using items = Shape<dyn, D...>;
};

// The accessors Tensor and TensorView share. Derived provides batch() and raw(), a
// T* to the elements (Tensor hides the mutable accessors behind const overloads).
template <class Derived, class T, class S>
class TensorAccess {
 public:
  using value_type = std::remove_const_t<T>;
  using shape = S;
  static constexpr std::size_t rank = S::rank;
  static_assert(std::is_floating_point_v<value_type>, "diffuse::Tensor: element type must be float or double");
  static_assert(rank >= 1, "diffuse::Tensor: rank must be at least 1");

  /// Number of elements.
  std::size_t size() const noexcept { return shape_size<S>(self().batch()); }

  /// Run-time extent of axis `axis`.
  std::size_t extent(std::size_t axis) const noexcept {
    return axis == 0 ? self().batch() : S::extents[axis];
  }

  /// Element at the given indices, one per axis. Bounds are checked in debug builds.
  template <class... I>
    requires(sizeof...(I) == rank && (std::is_integral_v<I> && ...))
  decltype(auto) operator()(I... idx) const {
    const std::size_t index[] = {static_cast<std::size_t>(idx)...};
    std::size_t offset = 0;
    for (std::size_t a = 0; a < rank; ++a) {
      if constexpr (DIFFUSE_DEBUG_CHECKS) {
        if (index[a] >= extent(a))
          throw std::out_of_range("diffuse: index " + std::to_string(index[a]) + " out of range for axis " +
                                  std::to_string(a) + " of shape " + shape_string<S>());
      }
      offset = offset * (a == 0 ? 1 : S::extents[a]) + index[a];
    }
    return self().raw()[offset];
  }

  /// Items [begin, begin + count) of the leading axis.
  auto items(std::size_t begin, std::size_t count) const {
    if (begin > self().batch() || count > self().batch() - begin)
      throw std::out_of_range("diffuse: items [" + std::to_string(begin) + ", " + std::to_string(begin + count) +
                              ") out of range for batch " + std::to_string(self().batch()));
    return TensorView<T, typename shape_tail<S>::items>(self().raw() + begin * S::item_size, count);
  }

  /// Item i of the leading axis, as a tensor of one rank less.
  auto item(std::size_t i) const
    requires(rank >= 2)
  {
    if (i >= self().batch())
      throw std::out_of_range("diffuse: item " + std::to_string(i) + " out of range for batch " +
                              std::to_string(self().batch()));
    return TensorView<T, typename shape_tail<S>::item>(self().raw() + i * S::item_size);
  }

  /// The same elements under shape S2 (same element count, checked at compile time).
  template <class S2>
  auto reshape() const {
    static_assert(check_reshape<S, S2>::value);
    if constexpr (S2::dynamic_batch)
      return TensorView<T, S2>(self().raw(), self().batch());
    else
      return TensorView<T, S2>(self().raw());
  }

  /// The leaf of an expression reading these elements.
  expr::Ref<value_type, S> expr() const noexcept { return {{}, self().raw(), self().batch()}; }

  T* begin() const noexcept { return self().raw(); }
  T* end() const noexcept { return self().raw() + size(); }

 private:
  const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }
};

}  // namespace detail

/// A non-owning view of contiguous elements shaped S. T may be const.
/// Assignment writes elements (like a tensor), it does not rebind the view: do not
/// keep views in containers that assign (std::vector::erase) or std::swap them.
///
/// Its accessors, shared with Tensor: size(), extent(axis), element access x(i, j, ...)
/// (bounds checked in debug builds), items(begin, count) and item(i) (views of part of
/// the leading axis), reshape<S2>() (the same elements under another shape), expr(),
/// begin() and end().
template <class T, class S>
class TensorView : public detail::TensorAccess<TensorView<T, S>, T, S> {
 public:
  using value_type = std::remove_const_t<T>;  ///< The element type, without const.

  /// A view of `batch` items at `data` (dynamic batch).
  TensorView(T* data, std::size_t batch)
    requires(S::dynamic_batch)
      : data_(data), batch_(batch) {}
  /// A view of the S::static_size elements at `data` (static shape).
  explicit TensorView(T* data)
    requires(!S::dynamic_batch)
      : data_(data), batch_(S::extents[0]) {}
  /// A view with a dynamic batch of a static-batch view.
  template <class U, class S2>
    requires(S::dynamic_batch && !S2::dynamic_batch && shapes_match<S, S2> &&
             std::is_convertible_v<U*, T*>)
  TensorView(const TensorView<U, S2>& v) : data_(v.data()), batch_(v.batch()) {}
  /// A mutable view converts to a const one.
  template <class U>
    requires(std::is_const_v<T> && std::is_same_v<const U, T>)
  TensorView(const TensorView<U, S>& v) : data_(v.data()), batch_(v.batch()) {}
  /// Another view of the same elements.
  TensorView(const TensorView&) = default;

  ///@{
  /// The first element; the elements are contiguous and row-major.
  T* data() const noexcept { return data_; }
  T* raw() const noexcept { return data_; }
  ///@}
  /// Items of the leading axis (the batch; S's first extent when static).
  std::size_t batch() const noexcept { return batch_; }

  ///@{
  /// Writes the elements of `src` (an expression, tensor, view or scalar) into the view.
  template <class E>
    requires(Operand<E> || Arithmetic<E>)
  const TensorView& operator=(const E& src) const {
    static_assert(!std::is_const_v<T>, "diffuse: cannot assign to a view of const elements");
    if constexpr (Arithmetic<E>)
      assign<S>(data_, batch_, expr::Scalar<value_type>{{}, static_cast<value_type>(src)});
    else
      assign<S>(data_, batch_, as_expr(src));
    return *this;
  }
  const TensorView& operator=(const TensorView& src) const { return operator= <TensorView>(src); }
  ///@}

  /// Exchanges what two views refer to (not the elements). Because assignment copies
  /// elements, use this (found by ADL: `using std::swap; swap(a, b);`), not std::swap.
  friend void swap(TensorView& a, TensorView& b) noexcept {
    std::swap(a.data_, b.data_);
    std::swap(a.batch_, b.batch_);
  }

 private:
  T* data_;
  std::size_t batch_;
};

/// An owning tensor of shape S with 64-byte aligned storage, zero-initialised.
/// It has TensorView's accessors; those of a const tensor give const elements.
template <class T, class S>
class Tensor : public detail::TensorAccess<Tensor<T, S>, T, S> {
 public:
  using value_type = T;  ///< The element type.
  static_assert(!std::is_const_v<T>, "diffuse::Tensor: element type must not be const");

  /// A static-batch tensor, or an empty dynamic-batch one.
  Tensor() : buffer_(S::dynamic_batch ? 0 : S::static_size), batch_(S::dynamic_batch ? 0 : S::extents[0]) {}
  /// A dynamic-batch tensor of `batch` items.
  explicit Tensor(std::size_t batch)
    requires(S::dynamic_batch)
      : buffer_(shape_size<S>(batch)), batch_(batch) {}
  /// Evaluates an expression into a new tensor (a dynamic batch takes the expression's).
  template <Operand E>
  explicit Tensor(const E& src) : Tensor() {
    *this = src;
  }

  ///@{
  /// The first element; the elements are contiguous, row-major and 64-byte aligned.
  T* data() noexcept { return buffer_.data(); }
  const T* data() const noexcept { return buffer_.data(); }
  ///@}
  /// Items of the leading axis (the batch; S's first extent when static).
  std::size_t batch() const noexcept { return batch_; }

  /// Changes the number of items of a dynamic-batch tensor (contents are zeroed).
  void resize(std::size_t batch)
    requires(S::dynamic_batch)
  {
    if (batch != batch_) {
      buffer_ = detail::AlignedBuffer<T>(shape_size<S>(batch));
      batch_ = batch;
    }
  }

  /// Evaluates `src` into this tensor. A dynamic-batch tensor takes the batch of `src`.
  template <class E>
    requires(Operand<E> || Arithmetic<E>)
  Tensor& operator=(const E& src) {
    if constexpr (Arithmetic<E>) {
      assign<S>(data(), batch_, expr::Scalar<T>{{}, static_cast<T>(src)});
    } else {
      auto e = as_expr(src);
      if constexpr (S::dynamic_batch) {
        if (e.batch() != expr::any_batch && e.batch() != batch_) {
          // Evaluate into new storage before the old is freed: e may read it.
          Tensor fresh(e.batch());
          assign<S>(fresh.data(), fresh.batch_, e);
          return *this = std::move(fresh);
        }
      }
      assign<S>(data(), batch_, e);
    }
    return *this;
  }
  ///@{
  /// Copies the elements (and the batch).
  Tensor(const Tensor&) = default;
  Tensor& operator=(const Tensor&) = default;
  ///@}
  ///@{
  /// A moved-from tensor stays usable: empty with a dynamic batch, zeroed otherwise.
  Tensor(Tensor&& o) noexcept(S::dynamic_batch) : buffer_(std::move(o.buffer_)), batch_(o.batch_) { o.reset_after_move(); }
  Tensor& operator=(Tensor&& o) noexcept(S::dynamic_batch) {
    if (this != &o) {
      buffer_ = std::move(o.buffer_);
      batch_ = o.batch_;
      o.reset_after_move();
    }
    return *this;
  }
  ///@}

  ///@{
  /// A view of the elements (of const elements for a const tensor).
  TensorView<T, S> view() noexcept { return make_view<T>(); }
  TensorView<const T, S> view() const noexcept { return make_view<const T>(); }
  operator TensorView<T, S>() noexcept { return view(); }
  operator TensorView<const T, S>() const noexcept { return view(); }
  ///@}
  /// The accessors Tensor shares with TensorView.
  using Access = detail::TensorAccess<Tensor<T, S>, T, S>;
  ///@{
  /// TensorView's accessors; those of a const tensor give const elements.
  auto items(std::size_t begin, std::size_t count) { return Access::items(begin, count); }
  auto items(std::size_t begin, std::size_t count) const { return view().items(begin, count); }
  auto item(std::size_t i) requires(S::rank >= 2) { return Access::item(i); }
  auto item(std::size_t i) const requires(S::rank >= 2) { return view().item(i); }
  template <class S2> auto reshape() { return Access::template reshape<S2>(); }
  template <class S2> auto reshape() const { return view().template reshape<S2>(); }
  template <class... I> T& operator()(I... idx) { return Access::operator()(idx...); }
  template <class... I> const T& operator()(I... idx) const { return view()(idx...); }
  T* begin() noexcept { return data(); }
  T* end() noexcept { return data() + this->size(); }
  const T* begin() const noexcept { return data(); }
  const T* end() const noexcept { return data() + this->size(); }
  ///@}

 private:
  friend Access;
  T* raw() const noexcept { return const_cast<T*>(buffer_.data()); }

  void reset_after_move() {
    if constexpr (S::dynamic_batch) batch_ = 0;
    else buffer_ = detail::AlignedBuffer<T>(S::static_size);
  }

  template <class U>
  TensorView<U, S> make_view() const noexcept {
    U* p = const_cast<T*>(buffer_.data());
    if constexpr (S::dynamic_batch) return TensorView<U, S>(p, batch_);
    else return TensorView<U, S>(p);
  }

  detail::AlignedBuffer<T> buffer_;
  std::size_t batch_;
};

/// The expression leaf of an operand (identity for expressions).
template <Operand X>
auto as_expr(const X& x) {
  if constexpr (Expression<X>) return x;
  else return x.expr();
}

}  // namespace diffuse

namespace diffuse {

/// Copies a tensor or view made on the GPU back to the host, where host code can then
/// read it (see device.hpp); a no-op on the CPU.
template <TensorLike X>
void update_host(const X& t) {
  update_host(t.data(), t.size());
}

/// Copies a tensor or view made on the GPU from the host to the GPU after host code
/// wrote it (see device.hpp); a no-op on the CPU.
template <TensorLike X>
void update_device(const X& t) {
  update_device(t.data(), t.size());
}

}  // namespace diffuse
