// Helpers shared by the core tests.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <vector>

#include <diffuse/tensor.hpp>

#include "support/threads.hpp"

namespace diffuse::testing {

/// Sizes that exercise the simd tail for 4, 8 and 16 lanes, and a large one that runs
/// on several threads.
inline const std::vector<std::size_t> tail_sizes = {1, 3, 15, 17, 1000003};

/// |a - b| <= tol * max(1, |b|), with NaN == NaN.
template <class T>
::testing::AssertionResult close(T a, T b, double tol) {
  if (std::isnan(a) && std::isnan(b)) return ::testing::AssertionSuccess();
  if (std::isinf(a) && a == b) return ::testing::AssertionSuccess();
  const double d = std::abs(static_cast<double>(a) - static_cast<double>(b));
  if (d <= tol * std::max(1.0, std::abs(static_cast<double>(b)))) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << a << " vs " << b << " (difference " << d << ")";
}

template <class T>
constexpr double tolerance = std::is_same_v<T, float> ? 2e-6 : 1e-14;

}  // namespace diffuse::testing
