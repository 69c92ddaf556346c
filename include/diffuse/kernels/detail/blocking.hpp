// Cache blocking of the GEMM engine, from the data caches of the CPU the program runs on.
//
// The register tile (MR x NR) is fixed at compile time by the vector ISA; the K and M
// blocks are sized at run time from the L1 and L2 data caches, so one binary blocks for the
// machine it runs on (Zen 4 has a 32 KiB L1, Zen 5 and Sapphire Rapids 48 KiB; L2 is 1 MiB
// on Zen 4/5 and 2 MiB on Sapphire Rapids). The rules reproduce, on a 48 KiB / 1 MiB CPU,
// the constants measured best there (docs/kernels.md, "Blocking").
//
// Not here: the loop nest that uses the blocks (gemm_core.hpp).
#pragma once

#include <algorithm>
#include <cstddef>
#if defined(__unix__)
#include <unistd.h>
#endif

#include "diffuse/kernels/index.hpp"

namespace diffuse::kernels::detail {

/// Sizes in bytes of a CPU's per-core data caches.
struct CacheSizes {
  std::size_t l1d = 0;  ///< level-1 data cache
  std::size_t l2 = 0;   ///< level-2 cache
};

/// What blocking_for assumes where the OS does not tell (48 KiB L1, 1 MiB L2).
inline constexpr CacheSizes default_cache_sizes{48 * 1024, 1024 * 1024};

/// The caches of the CPU this process runs on (glibc's sysconf, which asks CPUID on x86);
/// default_cache_sizes for a size the OS does not report or reports out of bounds.
inline CacheSizes detect_cache_sizes() {
  CacheSizes c = default_cache_sizes;
#if defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE)
  // Bounds: a virtual machine may report nonsense; outside them the default is safer.
  if (const long l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE); l1 >= 16 * 1024 && l1 <= 256 * 1024)
    c.l1d = static_cast<std::size_t>(l1);
  if (const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE); l2 >= 128 * 1024 && l2 <= 64 * 1024 * 1024)
    c.l2 = static_cast<std::size_t>(l2);
#endif
  return c;
}

/// The cache sizes the kernels block for: detect_cache_sizes(), read once. Tests and
/// benchmarks may assign others (never while a kernel runs) to try another CPU's blocking.
inline CacheSizes& blocking_cache_sizes() {
  static CacheSizes sizes = detect_cache_sizes();
  return sizes;
}

/// K and M blocks of one GEMM tile shape, in packed elements (one K step each) and panels.
struct Blocking {
  index_t kc;         ///< K block of wide GEMMs: one KC x NR B micro-panel in L1
  index_t k_thin;     ///< K block of thin GEMMs (<= 4 column panels): one MR x K A panel in L1
  index_t mc_panels;  ///< MR-row panels per M block: the packed MC x KC A block in L2
  index_t wgrad_bytes;  ///< dy rows of one weight-gradient pixel block, kept in L1
};

/// The blocking for an MR x NR tile of `elem`-byte packed elements on caches `c`, with
/// K blocks at most `ks` (the packed row stride). A multiple of 16 for every K size.
/// - kc: two thirds of L1 for the B micro-panel, the rest for the A and C lines streaming by;
/// - k_thin: 45 % of L1 for the A micro-panel reused against every B panel;
/// - mc_panels: a third of L2 for the A block (B panels and C tiles share the rest);
/// - wgrad_bytes: a third of L1.
constexpr Blocking blocking_for(const CacheSizes& c, int mr, int nr, std::size_t elem, index_t ks) {
  const auto l1 = static_cast<index_t>(c.l1d), l2 = static_cast<index_t>(c.l2);
  const auto e = static_cast<index_t>(elem);
  const auto down16 = [](index_t v) { return v / 16 * 16; };
  Blocking b{};
  b.kc = std::clamp<index_t>(down16(l1 * 2 / 3 / (nr * e)), 16, ks);
  b.k_thin = std::clamp<index_t>(down16(l1 * 45 / 100 / (mr * e)), 16, ks);
  b.mc_panels = std::clamp<index_t>(l2 / 3 / (mr * b.kc * e), 2, 256);
  b.wgrad_bytes = l1 / 3;
  return b;
}

}  // namespace diffuse::kernels::detail
