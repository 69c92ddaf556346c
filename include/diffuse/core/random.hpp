// Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11).
//
// Each 128-bit counter maps to four 32-bit random words through a keyed bijection,
// so element i of a fill depends only on (seed, stream, position + i / 4): the same
// numbers come out for any thread count and any split of the work. A Generator is a
// (seed, stream) pair plus a position that advances by whole blocks; saving and
// restoring those three numbers restores the generator exactly.
//
// Streams give independent sequences for the same seed, e.g. one per image index.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <numeric>
#include <utility>
#include <vector>

#include "diffuse/core/parallel.hpp"
#include "diffuse/core/tensor.hpp"

namespace diffuse {

/// The Philox4x32 bijection with 10 rounds.
struct Philox4x32 {
  using Counter = std::array<std::uint32_t, 4>;  ///< 128-bit counter, and the four output words.
  using Key = std::array<std::uint32_t, 2>;      ///< 64-bit key.

  /// The four random words of counter `ctr` under key `key`.
  static Counter apply(Counter ctr, Key key) noexcept {
    constexpr std::uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;  // multipliers
    constexpr std::uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;  // Weyl key increments
    for (int round = 0; round < 10; ++round) {
      if (round > 0) {
        key[0] += w0;
        key[1] += w1;
      }
      const std::uint64_t p0 = std::uint64_t{m0} * ctr[0];
      const std::uint64_t p1 = std::uint64_t{m1} * ctr[2];
      const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
      const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
      ctr = {hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0};
    }
    return ctr;
  }
};

/// A seeded stream of Philox blocks with a position (in blocks of four words).
class Generator {
 public:
  /// Stream `stream` of seed `seed`, at block `position`.
  explicit Generator(std::uint64_t seed = 0, std::uint64_t stream = 0, std::uint64_t position = 0) noexcept
      : seed_(seed), stream_(stream), position_(position) {}

  std::uint64_t seed() const noexcept { return seed_; }      ///< The seed (the Philox key).
  std::uint64_t stream() const noexcept { return stream_; }  ///< The stream (upper counter words).
  /// Blocks consumed so far; the next fill starts at this block.
  std::uint64_t position() const noexcept { return position_; }
  /// Moves to block `p` (restores a saved position).
  void set_position(std::uint64_t p) noexcept { position_ = p; }

  /// The four words of block `index` (independent of the position).
  Philox4x32::Counter block(std::uint64_t index) const noexcept {
    return Philox4x32::apply({static_cast<std::uint32_t>(index), static_cast<std::uint32_t>(index >> 32),
                              static_cast<std::uint32_t>(stream_), static_cast<std::uint32_t>(stream_ >> 32)},
                             {static_cast<std::uint32_t>(seed_), static_cast<std::uint32_t>(seed_ >> 32)});
  }

  /// Reserves `words` words (rounded up to whole blocks) and returns the first block.
  std::uint64_t take(std::size_t words) noexcept {
    std::uint64_t first = position_;
    position_ += (words + 3) / 4;
    return first;
  }

 private:
  std::uint64_t seed_, stream_, position_;
};

namespace detail {

// A word as a uniform number in the open interval (0, 1): never 0, so log() is safe.
inline double open_unit(std::uint32_t u) noexcept { return (static_cast<double>(u) + 0.5) * 0x1p-32; }

// Calls f(i, words) for each block of four elements of an n-element fill starting
// at block `first`, in parallel when large; f writes elements i..min(i+4, n).
template <class F>
void for_each_block(const Generator& g, std::uint64_t first, std::size_t n, F&& f) {
  const std::size_t blocks = (n + 3) / 4;
  const int threads = threads_for(n);
  parallel_for(static_cast<std::ptrdiff_t>(blocks), threads, [&](std::ptrdiff_t b) {
    f(static_cast<std::size_t>(b) * 4, g.block(first + static_cast<std::uint64_t>(b)));
  });
}

}  // namespace detail

/// Fills the n values at `out` with numbers uniform in (lo, hi) and advances the
/// generator. (One function per element type, not per tensor shape: the tensor overload
/// below calls it.)
template <class T>
void fill_uniform(T* out, std::size_t n, Generator& g, double lo = 0.0, double hi = 1.0) {
  // Rounding to T may reach an end of the interval: keep the values strictly inside.
  const T inside_lo = std::nextafter(static_cast<T>(lo), static_cast<T>(hi));
  const T inside_hi = std::nextafter(static_cast<T>(hi), static_cast<T>(lo));
  detail::for_each_block(g, g.take(n), n, [&](std::size_t i, const Philox4x32::Counter& w) {
    for (std::size_t l = 0; l < 4 && i + l < n; ++l)
      out[i + l] = std::clamp(static_cast<T>(lo + (hi - lo) * detail::open_unit(w[l])), inside_lo, inside_hi);
  });
}

/// Fills `t` with numbers uniform in (lo, hi) and advances the generator.
template <class X>
  requires TensorLike<std::remove_cvref_t<X>>
void fill_uniform(X&& t, Generator& g, double lo = 0.0, double hi = 1.0) {
  fill_uniform(t.data(), t.size(), g, lo, hi);
}

/// Fills the n values at `out` with normal numbers N(mean, stddev^2) (Box-Muller on each
/// pair of words) and advances the generator.
template <class T>
void fill_normal(T* out, std::size_t n, Generator& g, double mean = 0.0, double stddev = 1.0) {
  detail::for_each_block(g, g.take(n), n, [&](std::size_t i, const Philox4x32::Counter& w) {
    for (std::size_t pair = 0; pair < 2; ++pair) {
      const double r = std::sqrt(-2.0 * std::log(detail::open_unit(w[2 * pair])));
      const double theta = 2.0 * std::numbers::pi * detail::open_unit(w[2 * pair + 1]);
      const std::size_t j = i + 2 * pair;
      if (j < n) out[j] = static_cast<T>(mean + stddev * r * std::cos(theta));
      if (j + 1 < n) out[j + 1] = static_cast<T>(mean + stddev * r * std::sin(theta));
    }
  });
}

/// Fills `t` with normal numbers N(mean, stddev^2) (Box-Muller on each pair of words)
/// and advances the generator.
template <class X>
  requires TensorLike<std::remove_cvref_t<X>>
void fill_normal(X&& t, Generator& g, double mean = 0.0, double stddev = 1.0) {
  fill_normal(t.data(), t.size(), g, mean, stddev);
}

/// Sets `order` to a permutation of 0 .. n-1 drawn from `g` (Fisher-Yates, one block per
/// swap, its first two words as a 64-bit number; the modulo bias, about n / 2^64, is
/// negligible): the trainer's per-epoch shuffle and the classifier's.
inline void shuffle_indices(std::vector<std::size_t>& order, std::size_t n, Generator& g) {
  order.resize(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  for (std::size_t i = n; i-- > 1;) {
    const auto w = g.block(g.take(4));
    const std::uint64_t r = (std::uint64_t{w[0]} << 32) | w[1];
    std::swap(order[i], order[r % (i + 1)]);
  }
}

}  // namespace diffuse
