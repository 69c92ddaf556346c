// Evaluation of an expression into storage: the one loop every element-wise
// operation of the library runs through.
//
// The body walks the storage in simd batches, the few elements past the last whole
// batch are done one by one, and a large tensor is split across OpenMP threads. The
// split into batch and tail depends only on the size, never on the thread count, so
// results are bit-identical for any number of threads. (They are not bit-identical
// for any batch size: the tail uses <cmath>, the body xsimd's math, which may differ in
// the last bit for exp, log, tanh and the like.)
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>

#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/core/expr.hpp"
#include "diffuse/core/parallel.hpp"

namespace diffuse {

namespace detail {

// Static check that an expression of shape ES may be stored into a tensor of shape S.
template <class S, class ES>
struct check_assignable : common_shape<S, ES> {};

template <class T, Expression E>
void evaluate(T* dst, std::size_t n, const E& e) {
  constexpr std::size_t W = simd_width<T>;
  const std::size_t vectors = n / W;
  const std::size_t body = vectors * W;
  // Parallel work is split in chunks of whole vectors, so every thread count does the
  // same simd body and the same scalar tail.
  constexpr std::size_t chunk_vectors = 256;
  const std::ptrdiff_t chunks = static_cast<std::ptrdiff_t>((vectors + chunk_vectors - 1) / chunk_vectors);
  const int threads = threads_for(n);
  parallel_for(chunks, threads, [&](std::ptrdiff_t c) {
    const std::size_t begin = static_cast<std::size_t>(c) * chunk_vectors * W;
    const std::size_t end = std::min(body, begin + chunk_vectors * W);
    for (std::size_t i = begin; i < end; i += W) e.load(i).store_unaligned(dst + i);
  });
  for (std::size_t i = body; i < n; ++i) dst[i] = e.at(i);
}

// The same on the GPU (device.hpp): one work item per element, reading the tree's device
// copy. prepare() is skipped: it only serves the simd loads of the host path.
template <class T, class E>
struct EvaluateItem {
  E tree;
  T* dst;
  void operator()(int i) const { dst[i] = tree.at(std::size_t(i)); }
};
template <class T, Expression E>
void evaluate_on_device(T* dst, std::size_t n, const E& e) {
  DeviceStaging staging;  // before the launch, after it in destruction: freed once it ran
  const EvaluateItem<T, E> item{e.device_copy(staging), device_address(dst)};
  launch(LaunchKind::elementwise, std::int64_t(n), 1, item);
}

// dst[0, n) = src[0, n) on the device.
template <class T>
struct CopyItem {
  const T* src;
  T* dst;
  void operator()(int i) const { dst[i] = src[i]; }
};
template <class T>
void copy_on_device(T* dst, const T* src, std::size_t n) {
  launch(LaunchKind::elementwise, std::int64_t(n), 1, CopyItem<T>{device_address(src), device_address(dst)});
}

}  // namespace detail

/// Evaluates `e` into the storage of a tensor of shape S holding `batch` items (the
/// batch is used when S's leading extent is dyn). Checks the shapes statically and the
/// batch at run time (ShapeError); reads that overlap the destination other than
/// element for element go through a temporary.
template <class S, class T, Expression E>
void assign(T* dst, std::size_t batch, const E& e) {
  static_assert(detail::check_same_type<T, typename E::value_type>::value);
  using checked = typename detail::check_assignable<S, typename E::shape>::type;
  (void)sizeof(checked);
  const std::size_t leading = S::rank == 0 ? 1 : (S::dynamic_batch ? batch : S::extents[0]);
  if (e.batch() != expr::any_batch && e.batch() != leading)
    throw ShapeError("diffuse: cannot assign an expression with batch " + std::to_string(e.batch()) +
                     " to a tensor of shape " + shape_string<S>() + " with batch " +
                     std::to_string(leading));
  const std::size_t n = shape_size<S>(batch);
  if (detail::on_device()) {
    if (e.unsafe_alias(dst, dst + n)) {
      detail::AlignedBuffer<T> tmp(n);
      detail::evaluate_on_device(tmp.data(), n, e);
      detail::copy_on_device(dst, tmp.data(), n);
    } else {
      detail::evaluate_on_device(dst, n, e);
    }
    return;
  }
  E tree = e;  // a copy that may read what it needs now (see expr.hpp)
  tree.prepare();
  if (tree.unsafe_alias(dst, dst + n)) {
    detail::AlignedBuffer<T> tmp(n);
    detail::evaluate(tmp.data(), n, tree);
    std::memcpy(dst, tmp.data(), n * sizeof(T));
  } else {
    detail::evaluate(dst, n, tree);
  }
}

}  // namespace diffuse
