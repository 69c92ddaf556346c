// The kernels' device bodies: what gemm, the convolution, GroupNorm, softmax, upsampling
// and channel concatenation kernels (forward and backward), a bias gradient and the
// element-wise expressions run while the GPU is the active device (core/device.hpp). Pointers are
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

// dx at (n, iy, ix, ci) per item, ci fastest.
template <class T>
struct ConvInputGrad {
  const T *dy, *w;
  T* dx;
  int h, wd, oh, ow, k, stride, pad, cin, cout;
  T beta;
  void operator()(int e) const {
    const int ci = e % cin, rest = e / cin, ix = rest % wd, iy = (rest / wd) % h, n = rest / wd / h;
    const T v = elements::conv2d_input_grad<T>(oh, ow, k, stride, pad, cin, cout, dy, w, n, iy, ix, ci);
    dx[e] = beta == T(0) ? v : beta * dx[e] + v;
  }
};

// dw at (kh, kw, ci, co) per item, co fastest (neighbouring items read neighbouring dy).
template <class T>
struct ConvWeightGrad {
  const T *x, *dy;
  T* dw;
  int n, h, wd, oh, ow, k, stride, pad, cin, cout;
  T beta;
  void operator()(int e) const {
    const int co = e % cout, ci = (e / cout) % cin, kw = (e / cout / cin) % k, kh = e / cout / cin / k;
    const T v = elements::conv2d_weight_grad<T>(n, h, wd, oh, ow, stride, pad, cin, cout, x, dy, kh, kw, ci, co);
    dw[e] = beta == T(0) ? v : beta * dw[e] + v;
  }
};

// db[c] = beta * db[c] + sum over rows of g[row][c], one column per item.
template <class T>
struct ColumnSums {
  const T* g;
  T* db;
  int rows, cols;
  T beta;
  void operator()(int c) const {
    T sum = 0;
    for (int r = 0; r < rows; ++r) sum += g[r * cols + c];
    db[c] = beta == T(0) ? sum : beta * db[c] + sum;
  }
};

// GroupNorm backward. The pre-activation of element (i, p, c) is v = x a + b with
// a = rstd gamma m, b = (beta - mean rstd gamma) m + shift, m = 1 + scale.
template <class T>
struct GroupNormGrad {
  const T *x, *stats, *gamma, *beta, *ss, *dy;
  int c, cg, hw, groups;
  bool silu;
  T mean(int i, int ch) const { return stats[(i * groups + ch / cg) * 2]; }
  T rstd(int i, int ch) const { return stats[(i * groups + ch / cg) * 2 + 1]; }
  T mod(int i, int ch) const { return ss ? T(1) + ss[i * 2 * c + ch] : T(1); }
  // dL/dv at element e of image i, channel ch.
  T grad_v(int e, int i, int ch) const {
    if (!silu) return dy[e];
    const T m = mod(i, ch), r = rstd(i, ch);
    const T v = x[e] * (r * gamma[ch] * m) + (beta[ch] - mean(i, ch) * r * gamma[ch]) * m +
                (ss ? ss[i * 2 * c + c + ch] : T(0));
    const T sg = T(1) / (T(1) + std::exp(-v));
    return dy[e] * sg * (T(1) + v * (T(1) - sg));
  }
};

// Per (image, channel): sum g and sum g xhat into ws[i][0][c] and ws[i][1][c] (the first
// 2C values of image i's scratch), and dss.
template <class T>
struct GroupNormChannelSums {
  GroupNormGrad<T> f;
  T *ws, *dss;
  void operator()(int item) const {
    const int i = item / f.c, ch = item % f.c;
    const double mu = f.mean(i, ch);
    double sg = 0, sgd = 0;  // in double, as on the host
    for (int p = 0; p < f.hw; ++p) {
      const int e = (i * f.hw + p) * f.c + ch;
      const double g = f.grad_v(e, i, ch);
      sg += g;
      sgd += g * (double(f.x[e]) - mu);
    }
    const T sgx = T(double(f.rstd(i, ch)) * sgd);
    T* w = ws + i * f.hw * f.c;
    w[ch] = T(sg);
    w[f.c + ch] = sgx;
    if (dss) {
      dss[i * 2 * f.c + ch] = f.gamma[ch] * sgx + f.beta[ch] * T(sg);
      dss[i * 2 * f.c + f.c + ch] = T(sg);
    }
  }
};

// dx per element: rstd (g m gamma - mean_group(m gamma sum g) - xhat mean_group(m gamma sum g xhat)).
template <class T>
struct GroupNormInputGrad {
  GroupNormGrad<T> f;
  const T* ws;
  T* dx;
  T beta_dx;
  void operator()(int e) const {
    const int ch = e % f.c, i = e / (f.hw * f.c), g0 = ch / f.cg * f.cg;
    const T* w = ws + i * f.hw * f.c;
    T m1 = 0, m2 = 0;
    for (int q = g0; q < g0 + f.cg; ++q) {
      const T mg = f.mod(i, q) * f.gamma[q];
      m1 += mg * w[q];
      m2 += mg * w[f.c + q];
    }
    const T count = T(f.hw) * T(f.cg), r = f.rstd(i, ch);
    const T xhat = (f.x[e] - f.mean(i, ch)) * r;
    const T d = r * (f.grad_v(e, i, ch) * f.mod(i, ch) * f.gamma[ch] - m1 / count - xhat * m2 / count);
    dx[e] = beta_dx == T(0) ? d : beta_dx * dx[e] + d;
  }
};

// dgamma[c] += sum_i m sum g xhat, dbeta[c] += sum_i m sum g, one channel per item.
template <class T>
struct GroupNormParamGrads {
  GroupNormGrad<T> f;
  const T* ws;
  int n;
  T *dgamma, *dbeta;
  void operator()(int ch) const {
    T sg = 0, sgx = 0;
    for (int i = 0; i < n; ++i) {
      const T* w = ws + i * f.hw * f.c;
      sg += f.mod(i, ch) * w[ch];
      sgx += f.mod(i, ch) * w[f.c + ch];
    }
    dbeta[ch] += sg;
    dgamma[ch] += sgx;
  }
};

template <class T>
struct SoftmaxRowsBackward {
  const T *y, *dy;
  T* dx;
  int len, ld;
  void operator()(int r) const { elements::softmax_row_backward<double>(y + r * ld, dy + r * ld, dx + r * ld, len); }
};

// dx at (i, y, x, q) = beta dx + the sum of its 2x2 block of dy.
template <class T>
struct Upsample2xBackward {
  const T* dy;
  T* dx;
  int h, w, c;
  T beta;
  void operator()(int e) const {
    const int q = e % c, xx = (e / c) % w, yy = (e / c / w) % h, i = e / c / w / h;
    const T* a = dy + ((i * 2 * h + 2 * yy) * 2 * w + 2 * xx) * c + q;
    const T* b = a + 2 * w * c;
    const T sum = (a[0] + a[c]) + (b[0] + b[c]);
    dx[e] = beta == T(0) ? sum : beta * dx[e] + sum;
  }
};

// da = (add_a ? da : 0) + dout[..., :ca], db likewise, one dout element per item.
template <class T>
struct ConcatBackward {
  const T* g;
  T *da, *db;
  int ca, cb;
  bool add_a, add_b;
  void operator()(int e) const {
    const int c = ca + cb, p = e / c, q = e % c;
    if (q < ca) {
      T& o = da[p * ca + q];
      o = add_a ? o + g[e] : g[e];
    } else {
      T& o = db[p * cb + q - ca];
      o = add_b ? o + g[e] : g[e];
    }
  }
};

// e[n][c] += scale w[c][labels[n]] where labels[n] >= 0, one (n, c) per item.
template <class T>
struct LabelEmbeddingAdd {
  const T* w;
  const int* labels;
  T* e;
  int c, l;
  T scale;
  void operator()(int item) const {
    const int k = labels[item / c];
    if (k >= 0) e[item] += scale * w[(item % c) * l + k];
  }
};

// g[c][labels[n]] += scale d[n][c] over the images in order, one channel per item.
template <class T>
struct LabelEmbeddingGrad {
  const T* d;
  const int* labels;
  T* g;
  int n, c, l;
  T scale;
  void operator()(int ch) const {
    for (int i = 0; i < n; ++i)
      if (labels[i] >= 0) g[ch * l + labels[i]] += scale * d[i * c + ch];
  }
};

// Per image i of `item` values: r -= y, out[i] = the sum of squares of the new r, in double.
template <class T>
struct ResidualSquares {
  T* r;
  const T* y;
  double* out;
  int item;
  void operator()(int i) const {
    double s = 0;
    for (int k = i * item; k < (i + 1) * item; ++k) {
      r[k] -= y[k];
      s += double(r[k]) * double(r[k]);
    }
    out[i] = s;
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

/// nn::LabelEmbedding's forward on device pointers (labels too): e[n] += scale w[:, labels[n]].
template <class T>
void label_embedding_add(const T* w, const int* labels, T* e, std::size_t n, std::size_t c, std::size_t l, T scale) {
  using detail::i32;
  launch(diffuse::detail::LaunchKind::elementwise, std::int64_t(n * c), 1,
         detail::LabelEmbeddingAdd<T>{w, labels, e, i32(std::int64_t(c)), i32(std::int64_t(l)), scale});
}

/// nn::LabelEmbedding's backward on device pointers: g[:, labels[n]] += scale d[n].
template <class T>
void label_embedding_grad(const T* d, const int* labels, T* g, std::size_t n, std::size_t c, std::size_t l, T scale) {
  using detail::i32;
  launch(diffuse::detail::LaunchKind::elementwise, std::int64_t(c), std::int64_t(n),
         detail::LabelEmbeddingGrad<T>{d, labels, g, i32(std::int64_t(n)), i32(std::int64_t(c)),
                                       i32(std::int64_t(l)), scale});
}

/// Per image i of `item` values: r -= y and out[i] = the sum of squares of r (device pointers).
template <class T>
void residual_squares(T* r, const T* y, double* out, std::size_t n, std::size_t item) {
  using detail::i32;
  launch(diffuse::detail::LaunchKind::elementwise, std::int64_t(n), std::int64_t(item),
         detail::ResidualSquares<T>{r, y, out, i32(std::int64_t(item))});
}

/// kernels::conv2d_backward_input on device pointers: one work item per dx element.
template <class T>
void conv2d_backward_input(const Conv2dShape& s, const T* dy, const T* w, T* dx, T beta) {
  using detail::i32;
  const detail::ConvInputGrad<T> f{dy,          w,          dx,        i32(s.h),     i32(s.w),    i32(s.oh()),
                                   i32(s.ow()), i32(s.k),   i32(s.stride), i32(s.pad), i32(s.cin), i32(s.cout),
                                   beta};
  launch(diffuse::detail::LaunchKind::conv2d, std::int64_t(s.n) * s.h * s.w * s.cin, s.k * s.k * s.cout, f);
}

/// kernels::conv2d_backward_weight on device pointers: one work item per dw element,
/// then one per bias gradient.
template <class T>
void conv2d_backward_weight(const Conv2dShape& s, const T* x, const T* dy, T* dw, T* db, T beta) {
  using detail::i32;
  const detail::ConvWeightGrad<T> f{x,          dy,          dw,       i32(s.n),      i32(s.h),   i32(s.w),
                                    i32(s.oh()), i32(s.ow()), i32(s.k), i32(s.stride), i32(s.pad), i32(s.cin),
                                    i32(s.cout), beta};
  launch(diffuse::detail::LaunchKind::conv2d, s.kk() * s.cout, std::max<std::int64_t>(s.pixels(), 1), f);
  if (db)
    launch(diffuse::detail::LaunchKind::conv2d, s.cout, std::max<std::int64_t>(s.pixels(), 1),
           detail::ColumnSums<T>{dy, db, i32(s.pixels()), i32(s.cout), beta});
}

/// db = beta * db + the column sums of the rows x cols matrix g (a bias gradient).
template <class T>
void add_column_sums(const T* g, T* db, index_t rows, index_t cols, T beta) {
  using detail::i32;
  launch(diffuse::detail::LaunchKind::gemm, cols, std::max<index_t>(rows, 1),
         detail::ColumnSums<T>{g, db, i32(rows), i32(cols), beta});
}

/// kernels::group_norm_backward on device pointers: per (image, channel) sums into the
/// scratch ws, then one work item per dx element, then one per channel for dgamma, dbeta.
template <class T>
void group_norm_backward(const T* x, const T* stats, const T* gamma, const T* beta, const T* ss, bool silu,
                         const T* dy, T* dx, T beta_dx, T* dgamma, T* dbeta, T* dss, T* ws, std::size_t n,
                         std::size_t hw, std::size_t channels, std::size_t group_count) {
  using detail::i32;
  const int c = i32(std::int64_t(channels)), groups = i32(std::int64_t(group_count)), cg = c / groups;
  const detail::GroupNormGrad<T> f{x, stats, gamma, beta, ss, dy, c, cg, i32(std::int64_t(hw)), groups, silu};
  const auto kind = diffuse::detail::LaunchKind::group_norm;
  launch(kind, std::int64_t(n) * c, 2 * std::int64_t(hw), detail::GroupNormChannelSums<T>{f, ws, dss});
  launch(kind, i32(std::int64_t(n * hw * channels)), 2 * cg, detail::GroupNormInputGrad<T>{f, ws, dx, beta_dx});
  launch(kind, c, 2 * std::int64_t(n), detail::GroupNormParamGrads<T>{f, ws, i32(std::int64_t(n)), dgamma, dbeta});
}

/// kernels::softmax_rows_backward on device pointers: one work item per row.
template <class T>
void softmax_rows_backward(const T* y, const T* dy, T* dx, index_t rows, index_t len, index_t ld) {
  launch(diffuse::detail::LaunchKind::softmax, rows, 2 * len,
         detail::SoftmaxRowsBackward<T>{y, dy, dx, detail::i32(len), detail::i32(ld)});
}

/// kernels::upsample2x_nearest_backward on device pointers.
template <class T>
void upsample2x_nearest_backward(const T* dy, T* dx, index_t n, index_t h, index_t w, index_t c, T beta) {
  using detail::i32;
  launch(diffuse::detail::LaunchKind::resample, n * h * w * c, 4,
         detail::Upsample2xBackward<T>{dy, dx, i32(h), i32(w), i32(c), beta});
}

/// The backward of concat_channels: da = beta_a da + dout[..., :ca], db likewise (betas 0 or 1).
template <class T>
void concat_channels_backward(const T* g, T* da, T beta_a, T* db, T beta_b, std::size_t pixels, std::size_t ca,
                              std::size_t cb) {
  using detail::i32;
  launch(diffuse::detail::LaunchKind::concat, std::int64_t(pixels * (ca + cb)), 1,
         detail::ConcatBackward<T>{g, da, db, i32(std::int64_t(ca)), i32(std::int64_t(cb)), beta_a != T(0),
                                   beta_b != T(0)});
}


}  // namespace diffuse::kernels::device
