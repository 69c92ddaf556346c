// 2-D convolution on the CPU, NHWC activations and HWIO weights, as implicit GEMM on the
// engine of detail/gemm_core.hpp: forward (optional bias), gradient w.r.t. the input,
// gradient w.r.t. weights and bias. Square kernel k (any k; 1 and 3 are the common
// cases), any stride, zero padding, groups = 1.
//
//   x  [N][H][W][Cin]      y, dy  [N][OH][OW][Cout]      w, dw  [k][k][Cin][Cout] (HWIO)
//   OH = (H + 2 pad - k) / stride + 1, likewise OW.
//
// As GEMMs (rows x cols, depth), with P = N*OH*OW output pixels and KK = k*k*Cin:
//   forward          y (P x Cout)      = im2col(x) (P x KK)  * w (KK x Cout)      depth KK
//   backward input   stride 1: a forward convolution of dy with the flipped, transposed
//                    kernel and padding k-1-pad; otherwise dcol = dy * w^T per image and
//                    a col2im scatter-add (depth Cout)
//   backward weight  dw^T (Cout x KK)  = dy^T (Cout x P) * im2col(x) (P x KK)     depth P,
//                    P split into at most 16 ranges fixed by the sizes, partial sums
//                    added in order (same bits for any thread count)
// im2col is never materialised: the packing functors read x directly. A forward pass with
// at most 4 output channels (the output convolution) is not a GEMM: each output is a dot
// product over its window, vectorised along Cin (a GEMM would fill a 32-column panel).
//
// Overwrite or accumulate: every output takes beta; out = beta * out + result, and
// beta == 0 never reads out (so it may hold garbage). Layers pass beta = 1 to accumulate
// into .grad. The forward and input-gradient passes take BF16 operands when
// matmul_precision() is bf16 (precision.hpp), and so does the weight gradient (then on
// the packed engine, pixels in pairs; the direct pass for <= 4 outputs rounds its operands
// the same way).
// Not here: groups, dilation, asymmetric padding, argument checking.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "diffuse/kernels/conv2d_shape.hpp"
#include "diffuse/kernels/gemm.hpp"

namespace diffuse::kernels {

namespace detail {

/// d[0, n) = s[0, n); the BF16 overload rounds.
template <class T>
inline void store_run(T* __restrict d, const T* __restrict s, index_t n) noexcept {
  copy_run(d, s, n);
}
#if DIFFUSE_BF16_KERNELS
inline void store_run(std::uint16_t* __restrict d, const float* __restrict s, index_t n) noexcept {
  convert_run_bf16(d, s, n);
}
#endif

/// Copies one im2col row segment: columns [j, j + len) of output pixel (n, oy, ox), in
/// runs of channels, zeros where the window leaves the image. (kh, kw, ci) is column j.
/// D is T (FP32 packing) or std::uint16_t (BF16 packing: the values are rounded).
template <class D, class T>
inline void im2col_segment(D* __restrict d, const T* __restrict x, const Conv2dShape& s,
                           index_t n, index_t oy, index_t ox, index_t kh, index_t kw, index_t ci,
                           index_t len) noexcept {
  const index_t y0 = oy * s.stride - s.pad, x0 = ox * s.stride - s.pad;
  index_t p = 0;
  while (p < len) {
    const index_t run = std::min(s.cin - ci, len - p);
    const index_t iy = y0 + kh, ix = x0 + kw;
    if (iy >= 0 && iy < s.h && ix >= 0 && ix < s.w)
      store_run(d + p, x + ((n * s.h + iy) * s.w + ix) * s.cin + ci, run);
    else
      zero_run(d + p, run);
    p += run;
    ci = 0;
    if (++kw == s.k) {
      kw = 0;
      ++kh;
    }
  }
}

/// Packs `ntaps` whole taps from tap (kh, kw) of the window at (y0, x0) in image xn, Cin a
/// whole number of vectors: per tap one bounds test and Cin / W vector copies or zeros.
template <class D, class T>
inline void im2col_whole_taps(D* __restrict d, const T* __restrict xn, const Conv2dShape& s,
                              index_t y0, index_t x0, index_t kh, index_t kw,
                              index_t ntaps) noexcept {
  for (index_t t = 0; t < ntaps; ++t, d += s.cin) {
    const index_t iy = y0 + kh, ix = x0 + kw;
    if (++kw == s.k) {
      kw = 0;
      ++kh;
    }
    if (iy >= 0 && iy < s.h && ix >= 0 && ix < s.w)
      store_run(d, xn + (iy * s.w + ix) * s.cin, s.cin);
    else
      zero_run(d, s.cin);
  }
}

template <class T>
struct PackAIm2colRows {  // op(A) = im2col(x): P x KK, row panel dst[i * KS + k]
  const T* x;
  Conv2dShape s;
  void operator()(T* dst, index_t i0, int mr, index_t k0, index_t kc) const noexcept {
    constexpr index_t KS = Tiling<T>::KS;
    constexpr int MR = Tiling<T>::MR;
    const index_t oh = s.oh(), ow = s.ow();
    const index_t kh = k0 / (s.k * s.cin), rem = k0 % (s.k * s.cin);
    const index_t kw = rem / s.cin, ci = rem % s.cin;
    index_t m = i0;
    index_t n = m / (oh * ow), r = m % (oh * ow);
    index_t oy = r / ow, ox = r % ow;
    constexpr index_t W = Tiling<T>::W;
    // Whole taps and whole vectors (Cin a multiple of the SIMD width, tap-aligned K block):
    // per tap one bounds test and Cin / W vector copies.
    const bool whole_taps = ci == 0 && kc % s.cin == 0 && s.cin % W == 0;
    const index_t ntaps = kc / s.cin;
    for (int i = 0; i < mr; ++i) {
      if (whole_taps) {
        im2col_whole_taps(dst + i * KS, x + n * s.h * s.w * s.cin, s, oy * s.stride - s.pad,
                          ox * s.stride - s.pad, kh, kw, ntaps);
      } else {
        im2col_segment(dst + i * KS, x, s, n, oy, ox, kh, kw, ci, kc);
      }
      if (++ox == ow) {  // next output pixel without divisions
        ox = 0;
        if (++oy == oh) {
          oy = 0;
          ++n;
        }
      }
    }
    for (int i = mr; i < MR; ++i) zero_run(dst + i * KS, kc);
  }
};

#if DIFFUSE_BF16_KERNELS
/// op(A) = im2col(x) with BF16 pairs (detail/gemm_bf16.hpp): row panel dst[i * KS + q].
struct PackAIm2colRowsBf16 {
  const float* x;
  Conv2dShape s;
  // The target attribute lets the conversions inline into the tap loop.
  DIFFUSE_TARGET_BF16 void operator()(bf16x2* dst, index_t i0, int mr, index_t q0,
                                      index_t qc) const noexcept {
    constexpr index_t KS = Tiling<float>::KS;
    constexpr int MR = Tiling<float>::MR;
    const index_t oh = s.oh(), ow = s.ow();
    const index_t k0 = 2 * q0, len = std::min(2 * qc, s.kk() - k0);
    const index_t kh = k0 / (s.k * s.cin), rem = k0 % (s.k * s.cin);
    const index_t kw = rem / s.cin, ci = rem % s.cin;
    index_t n = i0 / (oh * ow), r = i0 % (oh * ow);
    index_t oy = r / ow, ox = r % ow;
    // Whole taps of whole 16-float vectors (the block starts on a tap): per tap one bounds
    // test and Cin / 16 conversions, as the FP32 packing's fast path.
    const bool whole_taps = ci == 0 && len % s.cin == 0 && s.cin % 16 == 0;
    const index_t ntaps = len / s.cin;
    for (int i = 0; i < mr; ++i) {
      auto* d = reinterpret_cast<std::uint16_t*>(dst + i * KS);
      if (whole_taps) {
        im2col_whole_taps(d, x + n * s.h * s.w * s.cin, s, oy * s.stride - s.pad,
                          ox * s.stride - s.pad, kh, kw, ntaps);
      } else {
        im2col_segment(d, x, s, n, oy, ox, kh, kw, ci, len);
      }
      zero_run_bf16(d + len, 2 * qc - len);
      if (++ox == ow) {
        ox = 0;
        if (++oy == oh) {
          oy = 0;
          ++n;
        }
      }
    }
    for (int i = mr; i < MR; ++i) zero_run(dst + i * KS, qc);
  }
};
#endif

template <class T>
struct PackBIm2colCols {  // op(B) = im2col(x) restricted to pixels [p0, ...): panel dst[k * NR + j]
  const T* x;
  Conv2dShape s;
  index_t p0;
  void operator()(T* dst, index_t j0, int nr, index_t k0, index_t kc) const noexcept {
    constexpr int NR = Tiling<T>::NR;
    const index_t oh = s.oh(), ow = s.ow();
    const index_t kh = j0 / (s.k * s.cin), rem = j0 % (s.k * s.cin);
    const index_t kw = rem / s.cin, ci = rem % s.cin;
    const index_t m = p0 + k0;
    index_t n = m / (oh * ow), r = m % (oh * ow);
    index_t oy = r / ow, ox = r % ow;
    // Channel counts that are multiples of NR: a panel is one run of one input pixel.
    const bool one_run = nr == NR && s.cin % NR == 0;
    for (index_t p = 0; p < kc; ++p) {
      T* d = dst + p * NR;
      if (one_run) {
        const index_t iy = oy * s.stride - s.pad + kh, ix = ox * s.stride - s.pad + kw;
        using V = simd<T>;
        constexpr int W = Tiling<T>::W;
        if (iy >= 0 && iy < s.h && ix >= 0 && ix < s.w) {
          const T* src = x + ((n * s.h + iy) * s.w + ix) * s.cin + ci;
          V::load_unaligned(src).store_aligned(d);
          V::load_unaligned(src + W).store_aligned(d + W);
        } else {
          V(T(0)).store_aligned(d);
          V(T(0)).store_aligned(d + W);
        }
      } else {
        im2col_segment(d, x, s, n, oy, ox, kh, kw, ci, nr);
        for (int j = nr; j < NR; ++j) d[j] = T(0);
      }
      if (++ox == ow) {
        ox = 0;
        if (++oy == oh) {
          oy = 0;
          ++n;
        }
      }
    }
  }
};

template <class T, int MR>
struct PackADyTrans {  // op(A) = dy^T restricted to pixels [p0, ...): k-major dst[k * MR + i]
  const T* dy;
  index_t cout, p0;
  void operator()(T* dst, index_t i0, int mr, index_t k0, index_t kc) const noexcept {
    if (mr == MR) {
      for (index_t p = 0; p < kc; ++p) {
        const T* src = dy + (p0 + k0 + p) * cout + i0;
        for (int i = 0; i < MR; ++i) dst[p * MR + i] = src[i];
      }
      return;
    }
    for (index_t p = 0; p < kc; ++p) {
      const T* src = dy + (p0 + k0 + p) * cout + i0;
      T* d = dst + p * MR;
      int i = 0;
      for (; i < mr; ++i) d[i] = src[i];
      for (; i < MR; ++i) d[i] = T(0);
    }
  }
};

#if DIFFUSE_BF16_KERNELS
/// The weight gradient's operands as BF16 pairs of consecutive pixels: the FP32 packer
/// writes 2 qc pixel rows into a scratch panel, which is then paired (an odd last pixel
/// pairs with zero). k-major A panel dst[q * MR + i] (dy^T) ...
template <int MR>
struct PackADyTransBf16 {
  const float* dy;
  index_t cout, p0, pixels;  // pixels of the range starting at p0
  void operator()(bf16x2* dst, index_t i0, int mr, index_t q0, index_t qc) const noexcept {
    const index_t rows = std::min(2 * qc, pixels - 2 * q0);
    float* tmp = thread_scratch<float, 2>(static_cast<std::size_t>(2 * qc * MR));
    PackADyTrans<float, MR>{dy, cout, p0}(tmp, i0, mr, 2 * q0, rows);
    for (index_t q = 0; q < qc; ++q)
      for (int i = 0; i < MR; ++i)
        dst[q * MR + i] = pack_bf16x2(tmp[2 * q * MR + i], 2 * q + 1 < rows ? tmp[(2 * q + 1) * MR + i] : 0.0f);
  }
};

/// ... and B panel dst[q * NR + j] (im2col(x) rows of the range's pixels).
struct PackBIm2colColsBf16 {
  const float* x;
  Conv2dShape s;
  index_t p0, pixels;
  void operator()(bf16x2* dst, index_t j0, int nr, index_t q0, index_t qc) const noexcept {
    constexpr int NR = Bf16Kernel::NR;
    const index_t rows = std::min(2 * qc, pixels - 2 * q0);
    float* tmp = thread_scratch<float, 2>(static_cast<std::size_t>((2 * qc + 1) * NR));
    PackBIm2colCols<float>{x, s, p0}(tmp, j0, nr, 2 * q0, rows);
    zero_run(tmp + rows * NR, (2 * qc + 1 - rows) * NR);  // the odd pixel's partner
    for (index_t q = 0; q < qc; ++q) {
      pair_rows_bf16(dst + q * NR, tmp + 2 * q * NR, tmp + (2 * q + 1) * NR);
      pair_rows_bf16(dst + q * NR + 16, tmp + 2 * q * NR + 16, tmp + (2 * q + 1) * NR + 16);
    }
  }
};
#endif

/// Weight-gradient tile without packing: dw[ci0 + i][j0 + j] (row stride ldc) =
/// beta * dw + sum_p xrow[p][ci0 + i] * dy[p * ldy + j] for i < MR, j < NR. xrow[p] points
/// at the input pixel under the kernel tap for output pixel p (or at zeros), so the MR
/// broadcasts of one step come from one pointer, and dy rows are read in place.
template <class T, int MR>
inline void wgrad_micro_kernel(index_t kc, const T* const* __restrict xrow, index_t ci0,
                               const T* __restrict dy, index_t ldy, T* c, index_t ldc,
                               T beta) noexcept {
  using V = simd<T>;
  constexpr int W = Tiling<T>::W;
  V acc0[MR], acc1[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    acc0[i] = V(T(0));
    acc1[i] = V(T(0));
  }
  for (index_t p = 0; p < kc; ++p) {
    const T* a = xrow[p] + ci0;
    const V b0 = V::load_unaligned(dy + p * ldy);
    const V b1 = V::load_unaligned(dy + p * ldy + W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const V ai(a[i]);
      acc0[i] = xsimd::fma(ai, b0, acc0[i]);
      acc1[i] = xsimd::fma(ai, b1, acc1[i]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    T* ci = c + i * ldc;
    if (beta != T(0)) {
      acc0[i] += V::load_unaligned(ci);
      acc1[i] += V::load_unaligned(ci + W);
    }
    acc0[i].store_unaligned(ci);
    acc1[i].store_unaligned(ci + W);
  }
}

/// Register tile rows of the weight-gradient kernel (input channels per tile).
template <class T>
inline constexpr int wgrad_mr = Tiling<T>::MR_SMALL;

/// Whether the packing-free weight-gradient path applies: whole tiles in both directions.
template <class T>
inline bool wgrad_direct_ok(const Conv2dShape& s) noexcept {
  return s.cin % wgrad_mr<T> == 0 && s.cout % Tiling<T>::NR == 0;
}

/// dw (HWIO, [KK][Cout]) = sum over output pixels [p0, p1) of im2col(x)^T dy, overwriting.
/// Pixels go in blocks of KS; per block a table gives, for every kernel tap and pixel, the
/// address of the input pixel under it (or of a zero row for the padding).
template <class T>
void wgrad_direct(const Conv2dShape& s, const T* x, const T* dy, index_t p0, index_t p1,
                  T* dw) {
  constexpr int MR = wgrad_mr<T>;
  constexpr int NR = Tiling<T>::NR;
  constexpr index_t KS = Tiling<T>::KS;
  // Pixels per block: the block's dy rows (reused by every tap and channel slice) plus one
  // cache line of x per pixel should stay in L1.
  const index_t KB = std::clamp<index_t>(
      blocking_for(blocking_cache_sizes(), MR, NR, sizeof(T), KS).wgrad_bytes /
          (s.cout * static_cast<index_t>(sizeof(T))) / 16 * 16, 16, KS);
  const index_t taps = s.k * s.k, oh = s.oh(), ow = s.ow();
  const T** tab = thread_scratch<const T*, 0>(static_cast<std::size_t>(taps * KS));
  T* zeros = thread_scratch<T, 1>(static_cast<std::size_t>(s.cin));
  zero_run(zeros, s.cin);
  if (p1 <= p0) zero_run(dw, s.kk() * s.cout);
  for (index_t pc = p0; pc < p1; pc += KB) {
    const index_t kc = std::min(KB, p1 - pc);
    index_t n = pc / (oh * ow), r = pc % (oh * ow);
    index_t oy = r / ow, ox = r % ow;
    for (index_t q = 0; q < kc; ++q) {
      for (index_t kh = 0; kh < s.k; ++kh) {
        const index_t iy = oy * s.stride - s.pad + kh;
        const bool row_in = iy >= 0 && iy < s.h;
        for (index_t kw = 0; kw < s.k; ++kw) {
          const index_t ix = ox * s.stride - s.pad + kw;
          tab[(kh * s.k + kw) * KB + q] = row_in && ix >= 0 && ix < s.w
                                              ? x + ((n * s.h + iy) * s.w + ix) * s.cin
                                              : zeros;
        }
      }
      if (++ox == ow) {
        ox = 0;
        if (++oy == oh) {
          oy = 0;
          ++n;
        }
      }
    }
    const T beta = pc == p0 ? T(0) : T(1);
    for (index_t t = 0; t < taps; ++t)
      for (index_t ci0 = 0; ci0 < s.cin; ci0 += MR)
        for (index_t j0 = 0; j0 < s.cout; j0 += NR)
          wgrad_micro_kernel<T, MR>(kc, tab + t * KB, ci0, dy + pc * s.cout + j0, s.cout,
                                    dw + (t * s.cin + ci0) * s.cout + j0, s.cout, beta);
  }
}

/// The float lanes of v rounded to BF16 precision (to_bf16 of precision.hpp, lane-wise).
inline simd<float> round_lanes_to_bf16(const simd<float>& v) noexcept {
  using U = simd<std::uint32_t>;
  const U u = bitcast_lanes<std::uint32_t>(v);
  const U rounded = (u + (U(0x7fffu) + ((u >> 16) & U(1u)))) & U(0xffff0000u);
  const U nan = (u | U(0x00400000u)) & U(0xffff0000u);  // stays a NaN, quieted
  return bitcast_lanes<float>(xsimd::select((u & U(0x7fffffffu)) > U(0x7f800000u), nan, rounded));
}

/// Outputs of one image row for C output channels, each a dot product over the taps inside
/// the image, vectorised along Cin; wt: [C][KK] (each channel's weights along Cin, already
/// rounded when Bf16). Bf16 rounds x to BF16 as it is read: the BF16 operands of the GEMM
/// path, with FP32 sums.
template <class T, int C, bool Bf16>
void conv2d_row_few_outputs(const Conv2dShape& s, const T* __restrict x, const T* __restrict wt,
                            const T* bias, T* __restrict y, T beta, index_t n, index_t oy) noexcept {
  using V = simd<T>;
  constexpr index_t W = Tiling<T>::W;
  const index_t kk = s.kk(), ow = s.ow(), cv = s.cin / W * W;
  for (index_t ox = 0; ox < ow; ++ox) {
    V acc[C];
    T tail[C];
    for (int c = 0; c < C; ++c) {
      acc[c] = V(T(0));
      tail[c] = T(0);
    }
    for (index_t kh = 0; kh < s.k; ++kh) {
      const index_t iy = oy * s.stride - s.pad + kh;
      if (iy < 0 || iy >= s.h) continue;
      for (index_t kw = 0; kw < s.k; ++kw) {
        const index_t ix = ox * s.stride - s.pad + kw;
        if (ix < 0 || ix >= s.w) continue;
        const T* xp = x + ((n * s.h + iy) * s.w + ix) * s.cin;
        const T* wp = wt + (kh * s.k + kw) * s.cin;
        for (index_t ci = 0; ci < cv; ci += W) {
          V xv = V::load_unaligned(xp + ci);
          if constexpr (Bf16) xv = round_lanes_to_bf16(xv);
          for (int c = 0; c < C; ++c) acc[c] = xsimd::fma(xv, V::load_unaligned(wp + c * kk + ci), acc[c]);
        }
        for (index_t ci = cv; ci < s.cin; ++ci)
          for (int c = 0; c < C; ++c) {
            T xi = xp[ci];
            if constexpr (Bf16) xi = round_to_bf16(xi);
            tail[c] += xi * wp[c * kk + ci];
          }
      }
    }
    T* yp = y + ((n * s.oh() + oy) * ow + ox) * C;
    for (int c = 0; c < C; ++c) {
      T r = reduce_add(acc[c]) + tail[c];
      if (bias) r += bias[c];
      yp[c] = beta == T(0) ? r : beta * yp[c] + r;
    }
  }
}

/// Few output channels (Cout <= 4: the output convolution to the image's channels). The
/// GEMM would compute a whole NR-wide column panel for them, 32 columns for Cout = 1, so
/// each output is computed directly. The sums do not depend on the thread count.
template <class T>
void conv2d_forward_few_outputs(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y,
                                T beta, int nt) {
  bool bf16 = false;
  if constexpr (std::is_same_v<T, float>) bf16 = matmul_precision() == MatmulPrecision::bf16;
  const index_t kk = s.kk(), oh = s.oh();
  T* wt = thread_scratch<T, 4>(static_cast<std::size_t>(kk * s.cout));  // [Cout][KK]
  for (index_t r = 0; r < kk; ++r)
    for (index_t co = 0; co < s.cout; ++co) {
      T v = w[r * s.cout + co];
      if constexpr (std::is_same_v<T, float>) v = bf16 ? round_to_bf16(v) : v;
      wt[co * kk + r] = v;
    }
  const auto work = static_cast<std::size_t>(s.pixels() * kk * s.cout);
  auto rows = [&]<bool Bf16>() {
    parallel_for(s.n * oh, work >= parallel_min_work ? nt : 1, [&](index_t row) {
      const index_t n = row / oh, oy = row % oh;
      switch (s.cout) {
        case 1: conv2d_row_few_outputs<T, 1, Bf16>(s, x, wt, bias, y, beta, n, oy); break;
        case 2: conv2d_row_few_outputs<T, 2, Bf16>(s, x, wt, bias, y, beta, n, oy); break;
        case 3: conv2d_row_few_outputs<T, 3, Bf16>(s, x, wt, bias, y, beta, n, oy); break;
        default: conv2d_row_few_outputs<T, 4, Bf16>(s, x, wt, bias, y, beta, n, oy); break;
      }
    });
  };
  if constexpr (std::is_same_v<T, float>) {
    if (bf16) {
      rows.template operator()<true>();
      return;
    }
  }
  rows.template operator()<false>();
}

template <class T>
void conv2d_forward_threads(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y,
                            T beta, int nt) {
  const index_t p = s.pixels();
  if (p <= 0 || s.cout <= 0) return;
  const Epilogue<T> epi{bias, Activation::none};
  if (s.cout <= 4) {  // before the 1x1 case: that GEMM would fill 32-column panels too
    conv2d_forward_few_outputs(s, x, w, bias, y, beta, nt);
    return;
  }
  if (s.k == 1 && s.stride == 1 && s.pad == 0) {  // 1x1: y = x w, a plain GEMM
    gemm_threads(false, false, p, s.cout, s.cin, T(1), x, s.cin, w, s.cout, beta, y, s.cout,
                 epi, nt);
    return;
  }
#if DIFFUSE_BF16_KERNELS
  if constexpr (std::is_same_v<T, float>) {
    if (matmul_precision() == MatmulPrecision::bf16) {
      // K blocks on whole taps when a tap is a whole number of pairs.
      gemm_driver<float, Tiling<float>::MR, true, Bf16Kernel>(
          p, s.cout, (s.kk() + 1) / 2, 1.0f, beta, y, s.cout, epi, PackAIm2colRowsBf16{x, s},
          PackBRowMajorBf16{w, s.cout, s.kk()}, nt, s.cin % 2 == 0 ? s.cin / 2 : 1);
      return;
    }
  }
#endif
  gemm_driver<T, Tiling<T>::MR, true>(p, s.cout, s.kk(), T(1), beta, y, s.cout, epi,
                                      PackAIm2colRows<T>{x, s}, PackBRowMajor<T>{w, s.cout},
                                      nt, s.cin);
}

}  // namespace detail

/// y = beta * y + conv(x, w) + bias.  x: [N][H][W][Cin], w: [k][k][Cin][Cout],
/// bias: [Cout] or nullptr, y: [N][OH][OW][Cout]. beta == 0 overwrites y.
template <class T>
void conv2d_forward(const Conv2dShape& s, const T* x /*[N][H][W][Cin]*/,
                    const T* w /*[k][k][Cin][Cout]*/, const T* bias /*[Cout] or null*/,
                    T* y /*[N][OH][OW][Cout]*/, T beta = T(0)) {
  if (diffuse::detail::on_device()) {
    device::conv2d_forward<T>(s, diffuse::detail::device_address(x), diffuse::detail::device_address(w), diffuse::detail::device_address(bias), diffuse::detail::device_address(y), beta);
    return;
  }
  detail::conv2d_forward_threads(s, x, w, bias, y, beta, available_threads());
}

/// dx = beta * dx + d(loss)/dx given dy = d(loss)/dy.  dy: [N][OH][OW][Cout],
/// w: [k][k][Cin][Cout], dx: [N][H][W][Cin]. beta == 0 overwrites dx, 1 accumulates.
template <class T>
void conv2d_backward_input(const Conv2dShape& s, const T* dy /*[N][OH][OW][Cout]*/,
                           const T* w /*[k][k][Cin][Cout]*/, T* dx /*[N][H][W][Cin]*/,
                           T beta = T(0)) {
  if (diffuse::detail::on_device()) {
    using diffuse::detail::device_address;
    device::conv2d_backward_input<T>(s, device_address(dy), device_address(w), device_address(dx), beta);
    return;
  }
  using detail::thread_scratch;
  const int nt = available_threads();
  const index_t img = s.h * s.w * s.cin;
  if (s.n <= 0 || img <= 0) return;
  if (s.k == 1 && s.stride == 1 && s.pad == 0) {  // 1x1: dx = dy w^T
    detail::gemm_threads(false, true, s.pixels(), s.cin, s.cout, T(1), dy, s.cout, w, s.cout,
                         beta, dx, s.cin, Epilogue<T>{}, nt);
    return;
  }
  const index_t kk = s.kk();
  if (s.stride == 1 && s.pad <= s.k - 1) {
    // Full correlation of dy with the kernel flipped in space and transposed in channels:
    // wf[kh][kw][co][ci] = w[k-1-kh][k-1-kw][ci][co], padding k-1-pad. Repacked per call
    // (k*k*Cin*Cout values, negligible next to the convolution).
    T* wf = thread_scratch<T, 2>(static_cast<std::size_t>(kk * s.cout));
    for (index_t kh = 0; kh < s.k; ++kh)
      for (index_t kw = 0; kw < s.k; ++kw) {
        const T* src = w + ((s.k - 1 - kh) * s.k + (s.k - 1 - kw)) * s.cin * s.cout;
        T* dst = wf + (kh * s.k + kw) * s.cout * s.cin;
        for (index_t ci = 0; ci < s.cin; ++ci)
          for (index_t co = 0; co < s.cout; ++co) dst[co * s.cin + ci] = src[ci * s.cout + co];
      }
    const Conv2dShape t{s.n, s.oh(), s.ow(), s.cout, s.cin, s.k, 1, s.k - 1 - s.pad};
    detail::conv2d_forward_threads(t, dy, wf, static_cast<const T*>(nullptr), dx, beta, nt);
    return;
  }
  // Strided: per image dcol (OH*OW x KK) = dy_n w^T, then scatter-add the columns.
  T* wt = thread_scratch<T, 2>(static_cast<std::size_t>(kk * s.cout));  // [Cout][KK]
  for (index_t r = 0; r < kk; ++r)
    for (index_t co = 0; co < s.cout; ++co) wt[co * kk + r] = w[r * s.cout + co];
  const index_t oh = s.oh(), ow = s.ow(), opix = oh * ow;
  // Images per GEMM: enough rows that M-edge tiles and call overheads do not matter,
  // few enough that dcol (chunk * OH*OW x KK) stays in L2.
  const index_t chunk = std::max<index_t>(1, std::min<index_t>(s.n, 256 / std::max<index_t>(opix, 1)));
  // Per input row (column): the kernel rows kh (cols kw) and output rows oy (cols ox) with
  // oy * stride - pad + kh == iy, as (kh, oy) pairs.
  index_t* taps = detail::thread_scratch<index_t, 0>(static_cast<std::size_t>(2 * (s.h + s.w) * (s.k + 1)));
  index_t* tap_y = taps;
  index_t* tap_x = tap_y + 2 * s.h * s.k;
  index_t* ny = tap_x + 2 * s.w * s.k;
  index_t* nx = ny + s.h;
  auto list_taps = [&](index_t len, index_t out, index_t* tab, index_t* cnt) {
    for (index_t i = 0; i < len; ++i) {
      cnt[i] = 0;
      for (index_t kq = 0; kq < s.k; ++kq) {
        const index_t t = i + s.pad - kq;
        if (t < 0 || t % s.stride != 0 || t / s.stride >= out) continue;
        tab[2 * (i * s.k + cnt[i])] = kq;
        tab[2 * (i * s.k + cnt[i]) + 1] = t / s.stride;
        ++cnt[i];
      }
    }
  };
  list_taps(s.h, oh, tap_y, ny);
  list_taps(s.w, ow, tap_x, nx);
  auto images = [&](index_t n0, index_t n1, int gemm_threads) {
    T* dcol = thread_scratch<T, 3>(static_cast<std::size_t>(std::max<index_t>(chunk * opix * kk, 1)));
    for (index_t c0 = n0; c0 < n1; c0 += chunk) {
      const index_t cn = std::min(chunk, n1 - c0);
      detail::gemm_threads(false, false, cn * opix, kk, s.cout, T(1), dy + c0 * opix * s.cout,
                           s.cout, wt, kk, T(0), dcol, kk, Epilogue<T>{}, gemm_threads);
      // Gather (not scatter): each dx pixel sums the 1..k*k columns that cover it and is
      // written once, so dx needs no zeroing pass. tap_y / tap_x list them per row / column.
      for (index_t n = c0; n < c0 + cn; ++n) {
        T* dxn = dx + n * img;
        const T* dcn = dcol + (n - c0) * opix * kk;
        for (index_t iy = 0; iy < s.h; ++iy)
          for (index_t ix = 0; ix < s.w; ++ix) {
            T* dst = dxn + (iy * s.w + ix) * s.cin;
            bool first = true;
            for (index_t a = 0; a < ny[iy]; ++a) {
              const index_t kh = tap_y[2 * (iy * s.k + a)], oy = tap_y[2 * (iy * s.k + a) + 1];
              for (index_t b = 0; b < nx[ix]; ++b) {
                const index_t kw = tap_x[2 * (ix * s.k + b)], ox = tap_x[2 * (ix * s.k + b) + 1];
                const T* src = dcn + (oy * ow + ox) * kk + (kh * s.k + kw) * s.cin;
                if (!first || beta == T(1))
                  detail::add_run(dst, src, s.cin);
                else if (beta == T(0))
                  detail::copy_run(dst, src, s.cin);
                else
                  for (index_t ci = 0; ci < s.cin; ++ci) dst[ci] = beta * dst[ci] + src[ci];
                first = false;
              }
            }
            if (first) {  // no tap reaches this pixel (stride > k)
              if (beta == T(0))
                detail::zero_run(dst, s.cin);
              else if (beta != T(1))
                for (index_t ci = 0; ci < s.cin; ++ci) dst[ci] *= beta;
            }
          }
      }
    }
  };
  if (nt > 1 && s.n >= nt) {
    DIFFUSE_OMP(parallel num_threads(nt))
    {
      // Loop in case the runtime gave a smaller team than asked for.
      for (index_t t = thread_index(); t < nt; t += detail::team_size())
        images(s.n * t / nt, s.n * (t + 1) / nt, 1);
    }
  } else {
    images(0, s.n, nt);
  }
}

/// dw = beta * dw + d(loss)/dw and db = beta * db + d(loss)/db given dy.
/// x: [N][H][W][Cin], dy: [N][OH][OW][Cout], dw: [k][k][Cin][Cout], db: [Cout] or nullptr.
/// beta == 0 overwrites, 1 accumulates (the layers' "grad +=").
template <class T>
void conv2d_backward_weight(const Conv2dShape& s, const T* x /*[N][H][W][Cin]*/,
                            const T* dy /*[N][OH][OW][Cout]*/,
                            T* dw /*[k][k][Cin][Cout]*/, T* db /*[Cout] or null*/,
                            T beta = T(0)) {
  if (diffuse::detail::on_device()) {
    using diffuse::detail::device_address;
    device::conv2d_backward_weight<T>(s, device_address(x), device_address(dy), device_address(dw), device_address(db),
                                      beta);
    return;
  }
  using detail::Tiling;
  const index_t kk = s.kk(), co = s.cout, p = std::max<index_t>(s.pixels(), 0);
  if (kk <= 0 || co <= 0) return;
  // The pixels are summed in `np` ranges whose number depends on the sizes alone (about
  // 256 pixels or more each, at most 16): the partial sums and the order they are added in
  // are then the same for any thread count, and so are the bits of dw and db.
  const int np = static_cast<int>(std::clamp<index_t>(p / 256, 1, 16));
  const int nt = std::min(available_threads(), np);
  // Per range: partial dw (HWIO [KK][Cout] on the direct path, [Cout][KK] on the packed
  // path), then partial db [Cout].
  const index_t part = co * kk + co;
  T* parts = detail::thread_scratch<T, 3>(static_cast<std::size_t>(part * np));
  constexpr int MRS = Tiling<T>::MR_SMALL, MRB = Tiling<T>::MR;
  bool bf16 = false;
#if DIFFUSE_BF16_KERNELS
  if constexpr (std::is_same_v<T, float>) bf16 = matmul_precision() == MatmulPrecision::bf16;
#endif
  const bool direct = !bf16 && detail::wgrad_direct_ok<T>(s);
  const bool small_tile = co % MRB != 0 && co % MRS == 0;

  // General channel counts: dw^T = dy^T im2col(x) on the packed GEMM engine.
  auto wgrad_packed = [&](index_t p0, index_t p1, T* dwt) {
    const detail::PackBIm2colCols<T> pack_b{x, s, p0};
    if (small_tile)
      detail::gemm_driver<T, MRS, false>(co, kk, p1 - p0, T(1), T(0), dwt, kk, Epilogue<T>{},
                                         detail::PackADyTrans<T, MRS>{dy, co, p0}, pack_b, 1);
    else
      detail::gemm_driver<T, MRB, false>(co, kk, p1 - p0, T(1), T(0), dwt, kk, Epilogue<T>{},
                                         detail::PackADyTrans<T, MRB>{dy, co, p0}, pack_b, 1);
  };
  // The same product with BF16 pairs of pixels (only reached when bf16 is set).
  auto wgrad_bf16 = [&]([[maybe_unused]] index_t p0, [[maybe_unused]] index_t p1, [[maybe_unused]] T* dwt) {
#if DIFFUSE_BF16_KERNELS
    if constexpr (std::is_same_v<T, float>) {
      const index_t px = p1 - p0, q = (px + 1) / 2;
      const detail::PackBIm2colColsBf16 pack_b{x, s, p0, px};
      if (small_tile)
        detail::gemm_driver<float, MRS, false, detail::Bf16Kernel>(co, kk, q, 1.0f, 0.0f, dwt, kk, Epilogue<float>{},
                                                                   detail::PackADyTransBf16<MRS>{dy, co, p0, px},
                                                                   pack_b, 1);
      else
        detail::gemm_driver<float, MRB, false, detail::Bf16Kernel>(co, kk, q, 1.0f, 0.0f, dwt, kk, Epilogue<float>{},
                                                                   detail::PackADyTransBf16<MRB>{dy, co, p0, px},
                                                                   pack_b, 1);
    }
#endif
  };
  // The threads share the ranges; one thread runs them all when nt == 1 (no parallel
  // region then: entering one makes libgomp allocate).
  auto work = [&] {
    for (int t = thread_index(); t < np; t += detail::team_size()) {
      const index_t p0 = p * t / np, p1 = p * (t + 1) / np;
      T* dwt = parts + t * part;
      T* dbt = dwt + co * kk;
      if (direct)
        detail::wgrad_direct(s, x, dy, p0, p1, dwt);
      else if (bf16)
        wgrad_bf16(p0, p1, dwt);
      else
        wgrad_packed(p0, p1, dwt);
      for (index_t c = 0; c < co; ++c) dbt[c] = T(0);
      for (index_t q = p0; q < p1; ++q) {
        const T* row = dy + q * co;
        for (index_t c = 0; c < co; ++c) dbt[c] += row[c];
      }
    }
  };
  // The whole team even when there are fewer ranges (see parallel.hpp).
  const int team = nt > 1 ? available_threads() : 1;
  if (nt > 1) {
    DIFFUSE_OMP(parallel num_threads(team))
    work();
  } else {
    work();
  }
  // Reduce the partials (and transpose [Cout][KK] -> [KK][Cout] on the packed path).
  const index_t rs = direct ? co : 1, cs = direct ? 1 : kk;
  parallel_for(kk, team, [&](index_t r) {
    T* out = dw + r * co;
    for (index_t c = 0; c < co; ++c) {
      T sum = T(0);
      for (int t = 0; t < np; ++t) sum += parts[t * part + r * rs + c * cs];
      out[c] = beta == T(0) ? sum : beta * out[c] + sum;
    }
  });
  if (db) {
    for (index_t c = 0; c < co; ++c) {
      T sum = T(0);
      for (int t = 0; t < np; ++t) sum += parts[t * part + co * kk + c];
      db[c] = beta == T(0) ? sum : beta * db[c] + sum;
    }
  }
}

}  // namespace diffuse::kernels

/// The float convolutions as explicit instantiations: `prefix` empty defines them, `extern`
/// declares them (see kernels/float_instances.hpp).
#define DIFFUSE_CONV2D_FLOAT_INSTANCES(prefix)                                                            \
  namespace diffuse::kernels {                                                                            \
  namespace detail {                                                                                      \
  prefix template void conv2d_forward_threads<float>(const Conv2dShape&, const float*, const float*,      \
                                                     const float*, float*, float, int);                   \
  }                                                                                                       \
  prefix template void conv2d_forward<float>(const Conv2dShape&, const float*, const float*, const float*, \
                                             float*, float);                                              \
  prefix template void conv2d_backward_input<float>(const Conv2dShape&, const float*, const float*, float*, \
                                                    float);                                               \
  prefix template void conv2d_backward_weight<float>(const Conv2dShape&, const float*, const float*,       \
                                                     float*, float*, float);                              \
  }

#if defined(DIFFUSE_EXTERN_FLOAT_KERNELS)
DIFFUSE_CONV2D_FLOAT_INSTANCES(extern)
#endif
