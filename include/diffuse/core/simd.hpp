// The SIMD vocabulary of the library: which xsimd batch type a float or double
// computation uses, and the few helpers xsimd 8 does not have.
//
// The architecture is the one the user's compiler flags select (xsimd::default_arch):
// 16 float lanes with AVX-512, 8 with AVX2, 4 with SSE2.
#pragma once

#include <cstddef>
#include <xsimd/xsimd.hpp>

namespace diffuse {

/// The xsimd batch of T for the architecture the compiler flags select.
template <class T>
using simd = xsimd::batch<T, xsimd::default_arch>;

/// Number of lanes of simd<T>.
template <class T>
inline constexpr std::size_t simd_width = simd<T>::size;

/// Alignment of owning tensors' storage: a cache line, which is also the widest vector.
inline constexpr std::size_t tensor_alignment = 64;

/// Sum of the lanes (xsimd 8 spells it hadd).
template <class T>
inline T reduce_add(const simd<T>& v) noexcept {
  return xsimd::hadd(v);
}

/// Largest lane (xsimd 8 has no reduce_max).
template <class T>
inline T reduce_max(const simd<T>& v) noexcept {
  alignas(tensor_alignment) T lanes[simd<T>::size];
  v.store_aligned(lanes);
  T m = lanes[0];
  for (std::size_t i = 1; i < simd<T>::size; ++i) m = lanes[i] > m ? lanes[i] : m;
  return m;
}

/// The lanes of v reinterpreted as To (same width): xsimd 11 takes the element type, 8 to
/// 10 the batch type.
template <class To, class From>
inline simd<To> bitcast_lanes(const simd<From>& v) noexcept {
  static_assert(sizeof(To) == sizeof(From), "bitcast_lanes keeps the lane width");
#if XSIMD_VERSION_MAJOR >= 11
  return xsimd::bitwise_cast<To>(v);
#else
  return xsimd::bitwise_cast<simd<To>>(v);
#endif
}

}  // namespace diffuse
