// Thin wrappers over OpenMP so that the library also builds without it.
//
// DIFFUSE_OMP(...) expands to `#pragma omp ...` when OpenMP is on and to nothing
// otherwise. The helpers below answer "how many threads may I use here?" so that a
// kernel called from inside a parallel region does not start a nested team.
#pragma once

#include <cstddef>

#if defined(_OPENMP)
#include <omp.h>
#define DIFFUSE_PRAGMA(x) _Pragma(#x)
#define DIFFUSE_OMP(...) DIFFUSE_PRAGMA(omp __VA_ARGS__)
#else
#define DIFFUSE_OMP(...)
#endif

namespace diffuse {

/// Threads a new parallel region would use here: 1 inside an active parallel region
/// (no oversubscription), otherwise omp_get_max_threads().
inline int available_threads() noexcept {
#if defined(_OPENMP)
  return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
  return 1;
#endif
}

/// Sets the number of threads later parallel regions use (ignored without OpenMP).
inline void set_num_threads(int n) noexcept {
#if defined(_OPENMP)
  if (n > 0) omp_set_num_threads(n);
#else
  (void)n;
#endif
}

/// f(i) for i in [0, n), split statically over `threads` threads when threads > 1, a
/// plain loop otherwise. Branching before the pragma matters beyond speed: entering a
/// parallel region, even one that runs on a single thread, costs libgomp a heap
/// allocation, and a training step must not allocate.
template <class F>
void parallel_for(std::ptrdiff_t n, int threads, F&& f) {
  if (threads > 1 && n > 1) {
    DIFFUSE_OMP(parallel for schedule(static) num_threads(threads))
    for (std::ptrdiff_t i = 0; i < n; ++i) f(i);
  } else {
    for (std::ptrdiff_t i = 0; i < n; ++i) f(i);
  }
}

inline int thread_index() noexcept {
#if defined(_OPENMP)
  return omp_get_thread_num();
#else
  return 0;
#endif
}

}  // namespace diffuse
