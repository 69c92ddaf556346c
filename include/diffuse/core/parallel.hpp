/// \file
/// The library's one threading policy, over OpenMP (and building without it).
///
/// DIFFUSE_OMP(...) expands to `#pragma omp ...` when OpenMP is on and to nothing
/// otherwise. Every loop of the library that may go parallel asks `threads_for(work)`
/// how many threads to use and runs through `parallel_for`: work below
/// `parallel_min_work` elements stays on the calling thread (starting a team costs more
/// than it saves), and a kernel called from inside a parallel region gets one thread, so
/// nested use never oversubscribes. GEMM and convolution split their own blocks but take
/// their thread count from available_threads() too. A parallel region always asks for
/// available_threads() threads, also when it has fewer pieces of work (the surplus
/// threads then wait): libgomp ends the threads of its pool beyond a smaller team, and the
/// kernels' thread-local scratch goes with them, to be allocated again next time.
#pragma once

#include <concepts>
#include <cstddef>

#if defined(_OPENMP)
#include <omp.h>
#define DIFFUSE_PRAGMA(x) _Pragma(#x)
/// `DIFFUSE_OMP(parallel for ...)` is `#pragma omp parallel for ...` with OpenMP, and
/// nothing without it.
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

/// Elements of work from which a loop is split over threads: for an element-wise loop
/// the elements it writes; a loop that passes over its data several times (GroupNorm,
/// softmax, resampling) counts each pass. Below this a libgomp team costs more than the
/// work it would share (the earlier per-site thresholds were 2^14 to 2^16).
inline constexpr std::size_t parallel_min_work = std::size_t{1} << 15;

/// Threads for a loop touching `work` elements: available_threads() from
/// parallel_min_work on, 1 below.
inline int threads_for(std::size_t work) noexcept { return work >= parallel_min_work ? available_threads() : 1; }

/// f(i) for i in [0, n), split statically over `threads` threads when threads > 1, a
/// plain loop otherwise. Branching before the pragma matters beyond speed: entering a
/// parallel region, even one that runs on a single thread, costs libgomp a heap
/// allocation, and a training step must not allocate.
template <std::integral I, class F>
void parallel_for(I n, int threads, F&& f) {
  if (threads > 1 && n > 1) {
    DIFFUSE_OMP(parallel for schedule(static) num_threads(threads))
    for (I i = 0; i < n; ++i) f(i);
  } else {
    for (I i = 0; i < n; ++i) f(i);
  }
}

/// f(i) for every item i of a batch of `batch` items of `item_size` elements, in
/// parallel when the batch is large (threads_for). f must touch item i only: the result
/// is then the same on any thread count.
template <class F>
void parallel_for_items(std::size_t batch, std::size_t item_size, F&& f) {
  parallel_for(batch, batch > 1 ? threads_for(batch * item_size) : 1, f);
}

/// The calling thread's number in the current parallel region (0 outside one, and
/// without OpenMP).
inline int thread_index() noexcept {
#if defined(_OPENMP)
  return omp_get_thread_num();
#else
  return 0;
#endif
}

}  // namespace diffuse
