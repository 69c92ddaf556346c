// Helpers shared by the kernel tests: deterministic random data and a comparison whose
// tolerance grows with the number of accumulated terms.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "diffuse/kernels/detail/blocking.hpp"

namespace diffuse_test {

template <class T>
std::vector<T> random_vector(std::size_t n, unsigned seed, T lo = T(-1), T hi = T(1)) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = T(d(gen));
  return v;
}

/// Tolerance for a sum of `terms` products of values of magnitude <= `scale`.
template <class T>
double tolerance(double terms, double scale = 1.0) {
  return 8.0 * double(std::numeric_limits<T>::epsilon()) * (terms + 8.0) * scale;
}

/// Expects every element of got to be within tol of want; reports the first mismatch.
template <class T>
::testing::AssertionResult all_near(const std::vector<T>& got, const std::vector<T>& want,
                                    double tol) {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << "size differs";
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = double(got[i]), w = double(want[i]);
    if (!(std::abs(g - w) <= tol * std::max(1.0, std::abs(w))))
      return ::testing::AssertionFailure() << "element " << i << ": got " << g << ", want " << w
                                           << " (tol " << tol << ")";
  }
  return ::testing::AssertionSuccess();
}

inline constexpr int thread_counts[] = {1, 2};

/// Other CPUs' data caches (L1d, L2): a small one, Zen 4's and Sapphire Rapids', so that
/// the kernels run with K and M blocks other than this machine's.
inline constexpr diffuse::kernels::detail::CacheSizes other_caches[] = {
    {16 * 1024, 256 * 1024}, {32 * 1024, 1024 * 1024}, {48 * 1024, 2048 * 1024}};

/// Makes the kernels block for `caches` while alive.
class BlockFor {
 public:
  explicit BlockFor(diffuse::kernels::detail::CacheSizes caches)
      : saved_(diffuse::kernels::detail::blocking_cache_sizes()) {
    diffuse::kernels::detail::blocking_cache_sizes() = caches;
  }
  ~BlockFor() { diffuse::kernels::detail::blocking_cache_sizes() = saved_; }
  BlockFor(const BlockFor&) = delete;
  BlockFor& operator=(const BlockFor&) = delete;

 private:
  diffuse::kernels::detail::CacheSizes saved_;
};

}  // namespace diffuse_test
