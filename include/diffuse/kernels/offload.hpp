// The kernels' device bodies: what gemm, conv2d_forward, group_norm_forward,
// softmax_rows, upsample2x_nearest_forward, the channel concatenation and the element-wise
// expressions run while the GPU is the active device (core/device.hpp). Pointers are
// device addresses. Each body is a function object called once per work item by
// launch(); its arithmetic is elements.hpp's, shared with the naive twins.
// launch() (core/device.hpp) chooses how many GPU threads. Indices are 32-bit: 64-bit
// index arithmetic and `collapse` made a GEMM 60 times slower on an H200 (docs/gpu.md).
#pragma once


#include <cmath>
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "diffuse/core/device.hpp"
#include "diffuse/kernels/detail/gemm_core.hpp"
#include "diffuse/kernels/elements.hpp"

namespace diffuse::kernels::device {

using diffuse::detail::launch;

namespace detail {

// 32-bit copies of sizes checked to fit (device indices are int).
inline int i32(std::int64_t v) {
  if (v < 0 || v > std::int64_t{0x7fffffff})
    throw DeviceError("diffuse::kernels::device: a size of " + std::to_string(v) + " elements (at most 2^31 - 1)");
  return static_cast<int>(v);
}

// A 4 x 4 block of C per item: rows i0..i0+3, columns j, j + q, j + 2q, j + 3q (q =
// ceil(n / 4)), so that neighbouring items read neighbouring columns of B.
template <class T>
struct GemmBlocks {
  const T *a, *b, *bias;
  T* c;
  int m, n, k, lda, ldb, ldc, sa, sb, sc, mb, q;
  T alpha, beta;
  bool ta, tb;
  Activation act;
  void operator()(int item) const {
    const int per = mb * q, z = item / per, r0 = (item % per) / q * 4, j0 = item % q;
    const T* az = a + z * sa;
    const T* bz = b + z * sb;
    T* cz = c + z * sc;
    T acc[4][4];
    if (r0 + 4 <= m && j0 + 3 * q < n) {
      elements::gemm_block<4, 4>(ta, tb, k, az, lda, bz, ldb, r0, j0, q, acc);
    } else {  // the edge: element by element
      for (int r = 0; r < 4; ++r)
        for (int t = 0; t < 4; ++t) {
          T one[1][1] = {{T(0)}};
          if (r0 + r < m && j0 + t * q < n)
            elements::gemm_block<1, 1>(ta, tb, k, az, lda, bz, ldb, r0 + r, j0 + t * q, 1, one);
          acc[r][t] = one[0][0];
        }
    }
    for (int r = 0; r < 4; ++r)
      for (int t = 0; t < 4; ++t) {
        const int i = r0 + r, j = j0 + t * q;
        if (i >= m || j >= n) continue;
        T v = alpha * acc[r][t];
        T& out = cz[i * ldc + j];
        if (beta != T(0)) v += beta * out;
        if (bias) v += bias[j];
        out = kernels::detail::activate(v, act);
      }
  }
};

// Four outputs along a row per item: (n, oy, ox0..ox0+3, co), co fastest.
template <class T>
struct ConvRows {
  const T *x, *w, *bias;
  T* y;
  int h, wd, oh, ow, k, stride, pad, cin, cout, owb;
  T beta;
  void operator()(int item) const {
    const int co = item % cout, rest = item / cout, ox0 = (rest % owb) * 4, oy = (rest / owb) % oh,
              n = rest / owb / oh;
    T acc[4];
    elements::conv2d_row<4>(h, wd, ow, k, stride, pad, cin, cout, x, w, n, oy, ox0, co, acc);
    for (int t = 0; t < 4 && ox0 + t < ow; ++t) {
      T v = acc[t] + (bias ? bias[co] : T(0));
      T& out = y[((n * oh + oy) * ow + ox0 + t) * cout + co];
      out = beta == T(0) ? v : beta * out + v;
    }
  }
};

// Mean and 1/sqrt(var + eps) of one (image, group) per item, in double.
template <class T>
struct GroupStats {
  const T* x;
  T* stats;
  int c, cg, hw, groups;
  double eps;
  void operator()(int item) const {
    const int i = item / groups, g = item % groups;
    const T* xi = x + i * hw * c + g * cg;
    double sum = 0;
    for (int p = 0; p < hw; ++p)
      for (int q = 0; q < cg; ++q) sum += double(xi[p * c + q]);
    const double count = double(hw) * double(cg), mean = sum / count;
    double var = 0;
    for (int p = 0; p < hw; ++p)
      for (int q = 0; q < cg; ++q) {
        const double d = double(xi[p * c + q]) - mean;
        var += d * d;
      }
    stats[item * 2] = T(mean);
    stats[item * 2 + 1] = T(1.0 / std::sqrt(var / count + eps));
  }
};

// y = act(GN(x) (1 + scale) + shift), one element per item.
template <class T>
struct GroupNormalize {
  const T *x, *stats, *gamma, *beta, *ss;
  T* y;
  int c, cg, hw, groups;
  bool silu;
  void operator()(int e) const {
    const int ch = e % c, i = e / (hw * c);
    const T* st = stats + (i * groups + ch / cg) * 2;
    const T m = ss ? T(1) + ss[i * 2 * c + ch] : T(1);
    const T a = st[1] * gamma[ch] * m;
    const T b = (beta[ch] - st[0] * st[1] * gamma[ch]) * m + (ss ? ss[i * 2 * c + c + ch] : T(0));
    const T v = x[e] * a + b;
    y[e] = silu ? v / (T(1) + std::exp(-v)) : v;
  }
};

template <class T>
struct SoftmaxRows {
  const T* x;
  T* y;
  int len, ld;
  void operator()(int r) const { elements::softmax_row<T>(x + r * ld, y + r * ld, len); }
};

template <class T>
struct Upsample2x {
  const T* x;
  T* y;
  int h, w, c;
  void operator()(int e) const {
    const int q = e % c, ox = (e / c) % (2 * w), oy = (e / c / (2 * w)) % (2 * h), i = e / c / (2 * w) / (2 * h);
    y[e] = x[((i * h + oy / 2) * w + ox / 2) * c + q];
  }
};

template <class T>
struct Concat {
  const T *a, *b;
  T* out;
  int ca, cb;
  void operator()(int e) const {
    const int c = ca + cb, p = e / c, q = e % c;
    out[e] = q < ca ? a[p * ca + q] : b[p * cb + q - ca];
  }
};

}  // namespace detail

/// kernels::gemm_batched on device pointers (stride 0 shares an operand).
template <class T>
void gemm_batched(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda,
                  index_t stride_a, const T* b, index_t ldb, index_t stride_b, T beta, T* c, index_t ldc,
                  index_t stride_c, index_t batch, const T* bias, Activation act) {
  using detail::i32;
  const int mb = (i32(m) + 3) / 4, q = (i32(n) + 3) / 4;
  const detail::GemmBlocks<T> f{a,         b,         bias,      c,         i32(m),        i32(n),  i32(alpha == T(0) ? 0 : k),
                                i32(lda),  i32(ldb),  i32(ldc),  i32(stride_a), i32(stride_b), i32(stride_c), mb,
                                q,         alpha,     beta,      trans_a,   trans_b,       act};
  launch(diffuse::detail::LaunchKind::gemm, std::int64_t(batch) * mb * q, 16 * std::max<std::int64_t>(k, 1), f);
}

/// kernels::conv2d_forward on device pointers.
template <class T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y, T beta) {
  using detail::i32;
  const int owb = (i32(s.ow()) + 3) / 4;
  const detail::ConvRows<T> f{x,          w,          bias,       y,          i32(s.h), i32(s.w),     i32(s.oh()),
                              i32(s.ow()), i32(s.k),  i32(s.stride), i32(s.pad), i32(s.cin), i32(s.cout), owb,
                              beta};
  launch(diffuse::detail::LaunchKind::conv2d, std::int64_t(s.n) * s.oh() * owb * s.cout, 4 * s.k * s.k * s.cin, f);
}

/// kernels::group_norm_forward on device pointers: the statistics (one work item per
/// image and group, in double as on the host), then one item per element.
template <class T>
void group_norm_forward(const T* x, T* y, T* stats, const T* gamma, const T* beta, const T* ss, bool silu,
                        std::size_t n, std::size_t hw, std::size_t channels, std::size_t group_count, double eps) {
  using detail::i32;
  const int c = i32(std::int64_t(channels)), groups = i32(std::int64_t(group_count)), cg = c / groups;
  const detail::GroupStats<T> st{x, stats, c, cg, i32(std::int64_t(hw)), groups, eps};
  launch(diffuse::detail::LaunchKind::group_norm, std::int64_t(n) * groups, 2 * std::int64_t(hw) * cg, st);
  const detail::GroupNormalize<T> nm{x, stats, gamma, beta, ss, y, c, cg, i32(std::int64_t(hw)), groups, silu};
  launch(diffuse::detail::LaunchKind::group_norm, i32(std::int64_t(n * hw * channels)), 1, nm);
}

/// kernels::softmax_rows on device pointers: one work item per row.
template <class T>
void softmax_rows(const T* x, T* y, index_t rows, index_t len, index_t ld) {
  launch(diffuse::detail::LaunchKind::softmax, rows, 3 * len, detail::SoftmaxRows<T>{x, y, detail::i32(len), detail::i32(ld)});
}

/// kernels::upsample2x_nearest_forward on device pointers.
template <class T>
void upsample2x_nearest_forward(const T* x, T* y, index_t n, index_t h, index_t w, index_t c) {
  using detail::i32;
  launch(diffuse::detail::LaunchKind::resample, n * 4 * h * w * c, 1, detail::Upsample2x<T>{x, y, i32(h), i32(w), i32(c)});
}

/// out = cat(a, b) along the last axis: pixels rows of ca + cb values.
template <class T>
void concat_channels(const T* a, const T* b, T* out, std::size_t pixels, std::size_t ca, std::size_t cb) {
  using detail::i32;
  launch(diffuse::detail::LaunchKind::concat, std::int64_t(pixels * (ca + cb)), 1,
         detail::Concat<T>{a, b, out, i32(std::int64_t(ca)), i32(std::int64_t(cb))});
}

/// Thrown by the kernels that have no device body yet (the backward passes: training
/// runs on the CPU).
[[noreturn]] inline void not_on_device(const char* kernel) {
  throw DeviceError(std::string("diffuse::kernels::") + kernel +
                    ": not available on the GPU yet (only sampling runs there; train on the CPU)");
}

}  // namespace diffuse::kernels::device
