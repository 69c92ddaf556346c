// Naive twin of kernels/gemm.hpp for the tests: plain loops, accumulation in double.
// Slow on purpose; the fast kernels are checked against it.
#pragma once

#include "diffuse/kernels/detail/gemm_core.hpp"
#include "diffuse/kernels/elements.hpp"

namespace diffuse::kernels::reference {

/// Same contract as kernels::gemm (row-major, op(A) M x K, op(B) K x N, fused epilogue).
template <class T>
void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha,
          const T* a /*op(A): M x K*/, index_t lda, const T* b /*op(B): K x N*/, index_t ldb,
          T beta, T* c /*[M][ldc]*/, index_t ldc, const Epilogue<T>& epi = {}) {
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) {
      double r = double(alpha) * elements::gemm_dot<double>(trans_a, trans_b, k, a, lda, b, ldb, i, j);
      if (beta != T(0)) r += double(beta) * double(c[i * ldc + j]);
      if (epi.bias) r += double(epi.bias[j]);
      c[i * ldc + j] = T(detail::activate(r, epi.act));
    }
}

}  // namespace diffuse::kernels::reference
