// Running a piece of a test with a given OpenMP thread count.
#pragma once

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace diffuse::testing {

/// Runs f() with `threads` OpenMP threads, restoring the previous setting.
template <class F>
void with_threads(int threads, F&& f) {
#if defined(_OPENMP)
  const int before = omp_get_max_threads();
  omp_set_num_threads(threads);
  f();
  omp_set_num_threads(before);
#else
  (void)threads;
  f();
#endif
}

}  // namespace diffuse::testing
