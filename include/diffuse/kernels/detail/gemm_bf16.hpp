// BF16 operands for the GEMM engine of gemm_core.hpp: a micro-kernel on AVX512-BF16
// `vdpbf16ps` (FP32 accumulators), the conversion runs, and the packing functors of plain
// and transposed row-major matrices.
//
// Packed layout: one packed element is a pair of BF16 values of consecutive K indices,
// (k = 2q, k = 2q + 1) in the low and high half of a 32-bit word (`bf16x2`); an odd K is
// padded with a zero. `vdpbf16ps` multiplies the pairs of an A broadcast and a B vector
// and adds both products to each FP32 lane, so the engine runs unchanged over K / 2 packed
// steps: row panels dst[i * KS + q], k-major panels dst[q * MR + i], B panels
// dst[q * NR + j], NR = 32 columns (two 16-lane vectors of pairs).
//
// The functions carry their own target attribute, so the build needs AVX-512 flags only
// (DIFFUSE_BF16_KERNELS); whether the CPU has AVX512-BF16 is checked at run time by
// precision.hpp before any of them is called.
#pragma once

#include "diffuse/kernels/detail/gemm_core.hpp"
#include "diffuse/kernels/precision.hpp"

#if DIFFUSE_BF16_KERNELS
#include <immintrin.h>

#include <cstdint>

#define DIFFUSE_TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

namespace diffuse::kernels::detail {

/// Two BF16 values of consecutive K indices (low half: the even index).
using bf16x2 = std::uint32_t;

/// Pairs (lo, hi) of floats as one packed element.
inline bf16x2 pack_bf16x2(float lo, float hi) noexcept {
  return bf16x2(to_bf16(lo)) | (bf16x2(to_bf16(hi)) << 16);
}

/// d[0, n) = BF16(s[0, n)) (round to nearest even).
DIFFUSE_TARGET_BF16 inline void convert_run_bf16(std::uint16_t* __restrict d,
                                                 const float* __restrict s,
                                                 index_t n) noexcept {
  index_t i = 0;
  // cvtne2ps_pbh(hi, lo) puts lo in the low half: 32 values per instruction, in order.
  for (; i + 32 <= n; i += 32)
    _mm512_storeu_si512(d + i, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(s + i + 16),
                                                            _mm512_loadu_ps(s + i)));
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i),
                        (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(s + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm256_mask_storeu_epi16(d + i, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, s + i)));
  }
}

/// d[0, n) = 0 for BF16 values.
inline void zero_run_bf16(std::uint16_t* d, index_t n) noexcept {
  for (index_t i = 0; i < n; ++i) d[i] = 0;
}

/// Interleaves two rows of 16 floats into 16 pairs: d[j] = (lo[j], hi[j]).
DIFFUSE_TARGET_BF16 inline void pair_rows_bf16(bf16x2* d, const float* lo, const float* hi) noexcept {
  // cvtne2ps_pbh(hi, lo) = [lo0..lo15 | hi0..hi15]; the permutation interleaves them.
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                       23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(hi), _mm512_loadu_ps(lo));
  _mm512_store_si512(d, _mm512_permutexvar_epi16(idx, both));
}

/// The BF16 micro-kernel: C[mr x nr] = act(alpha * A B + beta * C + bias) with A and B
/// packed BF16 pairs (layouts in the file comment) and FP32 accumulation.
struct Bf16Kernel {
  using packed = bf16x2;
  static constexpr int NR = 32;
  static_assert(Tiling<float>::NR == NR, "the BF16 kernels need 16-lane float vectors");

  template <int MR, bool ARow>
  DIFFUSE_TARGET_BF16 static void run(index_t kc, const bf16x2* __restrict a,
                                      const bf16x2* __restrict b, float* c, index_t ldc, int mr,
                                      int nr, float alpha, float beta, const float* bias,
                                      Activation act) noexcept {
    constexpr index_t KS = Tiling<float>::KS;
    __m512 acc0[MR], acc1[MR];
    for (int i = 0; i < mr; ++i) {
      __builtin_prefetch(c + i * ldc, 1);
      __builtin_prefetch(c + i * ldc + NR - 1, 1);
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      acc0[i] = _mm512_setzero_ps();
      acc1[i] = _mm512_setzero_ps();
    }
    for (index_t q = 0; q < kc; ++q) {
      const __m512bh b0 = (__m512bh)_mm512_load_si512(b + q * NR);
      const __m512bh b1 = (__m512bh)_mm512_load_si512(b + q * NR + 16);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const __m512bh ai = (__m512bh)_mm512_set1_epi32(static_cast<int>(ARow ? a[i * KS + q] : a[q * MR + i]));
        acc0[i] = _mm512_dpbf16_ps(acc0[i], ai, b0);
        acc1[i] = _mm512_dpbf16_ps(acc1[i], ai, b1);
      }
    }
    if (act == Activation::none) {
      // Masked loads and stores cover the right edge (nr < 32) as well.
      const __mmask16 m0 = nr >= 16 ? __mmask16(0xffff) : __mmask16((1u << nr) - 1u);
      const __mmask16 m1 = nr >= 32 ? __mmask16(0xffff)
                                    : nr > 16 ? __mmask16((1u << (nr - 16)) - 1u) : __mmask16(0);
      const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
      const __m512 bias0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
      const __m512 bias1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        if (i >= mr) break;
        float* ci = c + i * ldc;
        __m512 r0 = _mm512_fmadd_ps(acc0[i], va, bias0), r1 = _mm512_fmadd_ps(acc1[i], va, bias1);
        if (beta != 0.0f) {
          r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), r0);
          r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), r1);
        }
        _mm512_mask_storeu_ps(ci, m0, r0);
        _mm512_mask_storeu_ps(ci + 16, m1, r1);
      }
      return;
    }
    alignas(64) float tmp[MR * NR];
    for (int i = 0; i < MR; ++i) {
      _mm512_store_ps(tmp + i * NR, acc0[i]);
      _mm512_store_ps(tmp + i * NR + 16, acc1[i]);
    }
    for (int i = 0; i < mr; ++i) {
      float* ci = c + i * ldc;
      for (int j = 0; j < nr; ++j) {
        float r = alpha * tmp[i * NR + j];
        if (beta != 0.0f) r += beta * ci[j];
        if (bias) r += bias[j];
        ci[j] = activate(r, act);
      }
    }
  }
};

/// op(A) = A, A: [M][lda] floats, K columns: row panel of pairs dst[i * KS + q].
struct PackARowMajorBf16 {
  const float* a;
  index_t lda, k;
  void operator()(bf16x2* dst, index_t i0, int mr, index_t q0, index_t qc) const noexcept {
    constexpr index_t KS = Tiling<float>::KS;
    constexpr int MR = Tiling<float>::MR;
    const index_t k0 = 2 * q0, len = std::min(2 * qc, k - k0);
    for (int i = 0; i < mr; ++i) {
      auto* d = reinterpret_cast<std::uint16_t*>(dst + i * KS);
      convert_run_bf16(d, a + (i0 + i) * lda + k0, len);
      zero_run_bf16(d + len, 2 * qc - len);
    }
    for (int i = mr; i < MR; ++i) zero_run(dst + i * KS, qc);
  }
};

/// op(A) = A^T, A: [K][lda] floats: k-major panel of pairs dst[q * MR + i].
template <int MR>
struct PackATransBf16 {
  const float* a;
  index_t lda, k;
  void operator()(bf16x2* dst, index_t i0, int mr, index_t q0, index_t qc) const noexcept {
    for (index_t q = 0; q < qc; ++q) {
      const index_t k0 = 2 * (q0 + q);
      const float* lo = a + k0 * lda + i0;
      const float* hi = k0 + 1 < k ? lo + lda : nullptr;
      bf16x2* d = dst + q * MR;
      int i = 0;
      for (; i < mr; ++i) d[i] = pack_bf16x2(lo[i], hi ? hi[i] : 0.0f);
      for (; i < MR; ++i) d[i] = 0;
    }
  }
};

/// op(B) = B, B: [K][ldb] floats: panel of pairs dst[q * NR + j].
struct PackBRowMajorBf16 {
  const float* b;
  index_t ldb, k;
  void operator()(bf16x2* dst, index_t j0, int nr, index_t q0, index_t qc) const noexcept {
    constexpr int NR = Bf16Kernel::NR;
    for (index_t q = 0; q < qc; ++q) {
      const index_t k0 = 2 * (q0 + q);
      const float* lo = b + k0 * ldb + j0;
      const float* hi = k0 + 1 < k ? lo + ldb : nullptr;
      bf16x2* d = dst + q * NR;
      if (nr == NR && hi) {
        pair_rows_bf16(d, lo, hi);
        pair_rows_bf16(d + 16, lo + 16, hi + 16);
        continue;
      }
      int j = 0;
      for (; j < nr; ++j) d[j] = pack_bf16x2(lo[j], hi ? hi[j] : 0.0f);
      for (; j < NR; ++j) d[j] = 0;
    }
  }
};

/// op(B) = B^T, B: [N][ldb] floats: panel of pairs dst[q * NR + j].
struct PackBTransBf16 {
  const float* b;
  index_t ldb, k;
  void operator()(bf16x2* dst, index_t j0, int nr, index_t q0, index_t qc) const noexcept {
    constexpr int NR = Bf16Kernel::NR;
    for (int j = 0; j < nr; ++j) {
      const float* src = b + (j0 + j) * ldb;
      for (index_t q = 0; q < qc; ++q) {
        const index_t k0 = 2 * (q0 + q);
        dst[q * NR + j] = pack_bf16x2(src[k0], k0 + 1 < k ? src[k0 + 1] : 0.0f);
      }
    }
    for (int j = nr; j < NR; ++j)
      for (index_t q = 0; q < qc; ++q) dst[q * NR + j] = 0;
  }
};

/// The float GEMM of gemm.hpp with BF16 operands (same contract, K of any parity).
inline void gemm_bf16_threads(bool trans_a, bool trans_b, index_t m, index_t n, index_t k,
                              float alpha, const float* a, index_t lda, const float* b,
                              index_t ldb, float beta, float* c, index_t ldc,
                              const Epilogue<float>& epi, int nthreads) {
  constexpr int MR = Tiling<float>::MR;
  const index_t q = (k + 1) / 2;
  auto run = [&](const auto& pack_b) {
    if (trans_a)
      gemm_driver<float, MR, false, Bf16Kernel>(m, n, q, alpha, beta, c, ldc, epi,
                                                PackATransBf16<MR>{a, lda, k}, pack_b, nthreads);
    else
      gemm_driver<float, MR, true, Bf16Kernel>(m, n, q, alpha, beta, c, ldc, epi,
                                               PackARowMajorBf16{a, lda, k}, pack_b, nthreads);
  };
  if (trans_b)
    run(PackBTransBf16{b, ldb, k});
  else
    run(PackBRowMajorBf16{b, ldb, k});
}

}  // namespace diffuse::kernels::detail

#endif  // DIFFUSE_BF16_KERNELS
