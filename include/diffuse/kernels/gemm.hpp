// Dense matrix multiply on the CPU: C = act(alpha * op(A) op(B) + beta * C + bias),
// row-major, float or double, arbitrary leading dimensions, and a strided batched form
// for attention. Raw pointers and run-time sizes; the engine (packing, blocking,
// micro-kernel, threads) is detail/gemm_core.hpp.
//
// Float GEMMs take BF16 operands when kernels::matmul_precision() is bf16 (precision.hpp).
// Threads: OpenMP across cores; called inside a parallel region it runs on the calling
// thread only. Workspace: thread_local packing buffers that grow to the largest problem
// seen and are reused, so steady-state calls do not allocate.
// Not here: argument checking beyond "empty problem does nothing".
#pragma once

#include <type_traits>

#include "diffuse/kernels/detail/gemm_bf16.hpp"
#include "diffuse/kernels/detail/gemm_core.hpp"
#include "diffuse/kernels/offload.hpp"
#include "diffuse/kernels/precision.hpp"

/// CPU compute kernels on raw pointers and run-time sizes: GEMM, 2-D convolution,
/// resampling, group normalisation and softmax, with slow reference twins in
/// kernels::reference for the tests.
namespace diffuse::kernels {

namespace detail {

template <class T>
struct PackARowMajor {  // op(A) = A, A: [M][lda], row panel dst[i * KS + k]
  const T* a;
  index_t lda;
  void operator()(T* dst, index_t i0, int mr, index_t k0, index_t kc) const noexcept {
    constexpr index_t KS = Tiling<T>::KS;
    constexpr int MR = Tiling<T>::MR;
    for (int i = 0; i < mr; ++i) copy_run(dst + i * KS, a + (i0 + i) * lda + k0, kc);
    for (int i = mr; i < MR; ++i) zero_run(dst + i * KS, kc);
  }
};

template <class T, int MR>
struct PackATrans {  // op(A) = A^T, A: [K][lda], k-major panel dst[k * MR + i]
  const T* a;
  index_t lda;
  void operator()(T* dst, index_t i0, int mr, index_t k0, index_t kc) const noexcept {
    if (mr == MR) {  // fixed trip count: the compiler emits straight vector copies
      for (index_t p = 0; p < kc; ++p) {
        const T* src = a + (k0 + p) * lda + i0;
        T* d = dst + p * MR;
        for (int i = 0; i < MR; ++i) d[i] = src[i];
      }
      return;
    }
    for (index_t p = 0; p < kc; ++p) {
      const T* src = a + (k0 + p) * lda + i0;
      T* d = dst + p * MR;
      int i = 0;
      for (; i < mr; ++i) d[i] = src[i];
      for (; i < MR; ++i) d[i] = T(0);
    }
  }
};

template <class T>
struct PackBRowMajor {  // op(B) = B, B: [K][ldb], panel dst[k * NR + j]
  const T* b;
  index_t ldb;
  void operator()(T* dst, index_t j0, int nr, index_t k0, index_t kc) const noexcept {
    constexpr int NR = Tiling<T>::NR;
    if (nr == NR) {
      using V = simd<T>;
      constexpr int W = Tiling<T>::W;
      for (index_t p = 0; p < kc; ++p) {
        const T* src = b + (k0 + p) * ldb + j0;
        V::load_unaligned(src).store_aligned(dst + p * NR);
        V::load_unaligned(src + W).store_aligned(dst + p * NR + W);
      }
      return;
    }
    for (index_t p = 0; p < kc; ++p) {
      const T* src = b + (k0 + p) * ldb + j0;
      T* d = dst + p * NR;
      int j = 0;
      for (; j < nr; ++j) d[j] = src[j];
      for (; j < NR; ++j) d[j] = T(0);
    }
  }
};

template <class T>
struct PackBTrans {  // op(B) = B^T, B: [N][ldb], panel dst[k * NR + j]
  const T* b;
  index_t ldb;
  void operator()(T* dst, index_t j0, int nr, index_t k0, index_t kc) const noexcept {
    constexpr int NR = Tiling<T>::NR;
    for (int j = 0; j < nr; ++j) {
      const T* src = b + (j0 + j) * ldb + k0;
      for (index_t p = 0; p < kc; ++p) dst[p * NR + j] = src[p];
    }
    for (int j = nr; j < NR; ++j)
      for (index_t p = 0; p < kc; ++p) dst[p * NR + j] = T(0);
  }
};

template <class T>
void gemm_threads(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha,
                  const T* a, index_t lda, const T* b, index_t ldb, T beta, T* c, index_t ldc,
                  const Epilogue<T>& epi, int nthreads) {
  if (m <= 0 || n <= 0) return;
  constexpr int MR = Tiling<T>::MR;
  // alpha == 0: C = act(beta * C + bias) without touching A and B.
  if (alpha == T(0)) k = 0;
#if DIFFUSE_BF16_KERNELS
  if constexpr (std::is_same_v<T, float>) {
    if (matmul_precision() == MatmulPrecision::bf16) {
      gemm_bf16_threads(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, epi,
                        nthreads);
      return;
    }
  }
#endif
  auto run = [&](const auto& pack_b) {
    if (trans_a)
      gemm_driver<T, MR, false>(m, n, k, alpha, beta, c, ldc, epi, PackATrans<T, MR>{a, lda},
                                pack_b, nthreads);
    else
      gemm_driver<T, MR, true>(m, n, k, alpha, beta, c, ldc, epi, PackARowMajor<T>{a, lda},
                               pack_b, nthreads);
  };
  if (trans_b)
    run(PackBTrans<T>{b, ldb});
  else
    run(PackBRowMajor<T>{b, ldb});
}

}  // namespace detail

/// C = act(alpha * op(A) * op(B) + beta * C + bias), all row-major.
/// op(A) is M x K: A is [M][lda] (trans_a false) or [K][lda] (trans_a true);
/// op(B) is K x N: B is [K][ldb] or [N][ldb]; C is [M][ldc]. beta == 0 never reads C.
/// Any M, N, K >= 0 (K == 0 gives act(beta * C + bias)). For float, the operands are
/// rounded to BF16 when matmul_precision() is MatmulPrecision::bf16.
template <class T>
void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha,
          const T* a /*op(A): M x K*/, index_t lda, const T* b /*op(B): K x N*/, index_t ldb,
          T beta, T* c /*[M][ldc]*/, index_t ldc, const Epilogue<T>& epi = {}) {
  if (diffuse::detail::on_device()) {
    if (m > 0 && n > 0)
      device::gemm_batched<T>(trans_a, trans_b, m, n, k, alpha, diffuse::detail::device_address(a), lda, 0, diffuse::detail::device_address(b), ldb, 0, beta, diffuse::detail::device_address(c), ldc, 0,
                              1, diffuse::detail::device_address(epi.bias), epi.act);
    return;
  }
  detail::gemm_threads(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, epi,
                       available_threads());
}

/// Strided batched GEMM: for b in [0, batch): C_b = act(alpha op(A_b) op(B_b) + beta C_b
/// + bias) with X_b = x + b * stride_x (a stride of 0 shares one operand, e.g. weights).
/// Threads go across the batch when it has at least as many items as threads.
template <class T>
void gemm_batched(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha,
                  const T* a /*[batch] op(A): M x K*/, index_t lda, index_t stride_a,
                  const T* b /*[batch] op(B): K x N*/, index_t ldb, index_t stride_b, T beta,
                  T* c /*[batch][M][ldc]*/, index_t ldc, index_t stride_c, index_t batch,
                  const Epilogue<T>& epi = {}) {
  if (batch <= 0 || m <= 0 || n <= 0) return;
  if (diffuse::detail::on_device()) {
    device::gemm_batched<T>(trans_a, trans_b, m, n, k, alpha, diffuse::detail::device_address(a), lda, stride_a, diffuse::detail::device_address(b), ldb, stride_b, beta,
                            diffuse::detail::device_address(c), ldc, stride_c, batch, diffuse::detail::device_address(epi.bias), epi.act);
    return;
  }
  const int nt = available_threads();
  if (nt > 1 && batch >= nt) {
    parallel_for(batch, nt, [&](index_t i) {
      detail::gemm_threads(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda,
                           b + i * stride_b, ldb, beta, c + i * stride_c, ldc, epi, 1);
    });
  } else {
    for (index_t i = 0; i < batch; ++i)
      detail::gemm_threads(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda,
                           b + i * stride_b, ldb, beta, c + i * stride_c, ldc, epi, nt);
  }
}

}  // namespace diffuse::kernels

/// The float GEMMs as explicit instantiations: `prefix` empty defines them, `extern`
/// declares them (see kernels/float_instances.hpp).
#define DIFFUSE_GEMM_FLOAT_INSTANCES(prefix)                                                        \
  namespace diffuse::kernels {                                                                      \
  namespace detail {                                                                                \
  prefix template void gemm_threads<float>(bool, bool, index_t, index_t, index_t, float, const float*, \
                                           index_t, const float*, index_t, float, float*, index_t,     \
                                           const Epilogue<float>&, int);                               \
  }                                                                                                 \
  prefix template void gemm<float>(bool, bool, index_t, index_t, index_t, float, const float*, index_t, \
                                   const float*, index_t, float, float*, index_t, const Epilogue<float>&); \
  prefix template void gemm_batched<float>(bool, bool, index_t, index_t, index_t, float, const float*,  \
                                           index_t, index_t, const float*, index_t, index_t, float,     \
                                           float*, index_t, index_t, index_t, const Epilogue<float>&);  \
  }

#if defined(DIFFUSE_EXTERN_FLOAT_KERNELS)
DIFFUSE_GEMM_FLOAT_INSTANCES(extern)
#endif
