// The arithmetic of one output element of the matrix kernels, written once: the naive
// twins (kernels/reference, accumulating in double) and the device kernels (offload.hpp,
// accumulating in float) both call these, so the GPU path has no second copy of the
// definitions. Plain loops only: they compile for the host and for the GPU.
#pragma once

#include <cmath>

#include "diffuse/kernels/conv2d_shape.hpp"

namespace diffuse::kernels::elements {

/// acc[r][t] = sum_p op(A)[i0 + r][p] op(B)[p][j0 + t js] for an R x C block, accumulated
/// in Acc (row-major operands as in kernels::gemm; the caller keeps the block inside C).
/// Columns js apart let neighbouring GPU threads read neighbouring columns of B.
template <int R, int C, class Acc, class T, class I>
inline void gemm_block(bool trans_a, bool trans_b, I k, const T* a, I lda, const T* b, I ldb, I i0, I j0, I js,
                       Acc (&acc)[R][C]) {
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < C; ++t) acc[r][t] = 0;
  for (I p = 0; p < k; ++p) {
    Acc av[R], bv[C];
    for (int r = 0; r < R; ++r) av[r] = trans_a ? a[p * lda + i0 + r] : a[(i0 + r) * lda + p];
    for (int t = 0; t < C; ++t) bv[t] = trans_b ? b[(j0 + t * js) * ldb + p] : b[p * ldb + j0 + t * js];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < C; ++t) acc[r][t] += av[r] * bv[t];
  }
}

/// sum_p op(A)[i][p] op(B)[p][j], accumulated in Acc: gemm_block of one element.
template <class Acc, class T>
inline Acc gemm_dot(bool trans_a, bool trans_b, index_t k, const T* a, index_t lda, const T* b, index_t ldb,
                    index_t i, index_t j) {
  Acc acc[1][1];
  gemm_block<1, 1>(trans_a, trans_b, k, a, lda, b, ldb, i, j, index_t(1), acc);
  return acc[0][0];
}

/// The convolution sums without bias of P outputs in a row, (n, oy, ox0 + t, co) for
/// t < P: NHWC x, HWIO w, sizes h, w (input), k, stride, pad, cin, cout; outputs past the
/// row's end (ox0 + t >= ow) are left 0. One weight read serves the P outputs.
template <int P, class Acc, class T, class I>
inline void conv2d_row(I h, I wd, I ow, I k, I stride, I pad, I cin, I cout, const T* x, const T* w, I n, I oy, I ox0,
                       I co, Acc (&acc)[P]) {
  for (int t = 0; t < P; ++t) acc[t] = 0;
  for (I kh = 0; kh < k; ++kh) {
    const I iy = oy * stride - pad + kh;
    if (iy < 0 || iy >= h) continue;
    for (I kw = 0; kw < k; ++kw) {
      const T* wp = w + (kh * k + kw) * cin * cout + co;
      const T* xr = x + ((n * h + iy) * wd) * cin;
      for (I ci = 0; ci < cin; ++ci) {
        const Acc wv = Acc(wp[ci * cout]);
        for (int t = 0; t < P; ++t) {
          const I ix = (ox0 + t) * stride - pad + kw;
          if (ox0 + t < ow && ix >= 0 && ix < wd) acc[t] += Acc(xr[ix * cin + ci]) * wv;
        }
      }
    }
  }
}

/// The convolution sum of output (n, oy, ox, co) without bias: conv2d_row of one output.
template <class Acc, class T>
inline Acc conv2d_dot(const Conv2dShape& s, const T* x, const T* w, index_t n, index_t oy, index_t ox, index_t co) {
  Acc acc[1];
  conv2d_row<1>(s.h, s.w, s.ow(), s.k, s.stride, s.pad, s.cin, s.cout, x, w, n, oy, ox, co, acc);
  return acc[0];
}

/// y = softmax(x) over one row of len >= 1 values, in Acc.
template <class Acc, class T>
inline void softmax_row(const T* x, T* y, index_t len) {
  Acc m = Acc(x[0]);
  for (index_t j = 1; j < len; ++j) m = Acc(x[j]) > m ? Acc(x[j]) : m;
  Acc s = 0;
  for (index_t j = 0; j < len; ++j) s += std::exp(Acc(x[j]) - m);
  for (index_t j = 0; j < len; ++j) y[j] = T(std::exp(Acc(x[j]) - m) / s);
}

/// The input gradient of a convolution at x element (n, iy, ix, ci), accumulated in Acc:
/// over the taps (kh, kw) whose output pixel (oy, ox) = ((iy + pad - kh) / stride, (ix +
/// pad - kw) / stride) exists, sum_co dy[n][oy][ox][co] w[kh][kw][ci][co] (NHWC dy of
/// oh x ow pixels, HWIO w).
template <class Acc, class T, class I>
inline Acc conv2d_input_grad(I oh, I ow, I k, I stride, I pad, I cin, I cout, const T* dy, const T* w, I n, I iy,
                             I ix, I ci) {
  Acc acc = 0;
  for (I kh = 0; kh < k; ++kh) {
    const I ty = iy + pad - kh;
    if (ty < 0 || ty % stride != 0 || ty / stride >= oh) continue;
    for (I kw = 0; kw < k; ++kw) {
      const I tx = ix + pad - kw;
      if (tx < 0 || tx % stride != 0 || tx / stride >= ow) continue;
      const T* d = dy + ((n * oh + ty / stride) * ow + tx / stride) * cout;
      const T* wp = w + ((kh * k + kw) * cin + ci) * cout;
      for (I co = 0; co < cout; ++co) acc += Acc(d[co]) * Acc(wp[co]);
    }
  }
  return acc;
}

/// The weight gradient of a convolution at w element (kh, kw, ci, co), accumulated in Acc:
/// over the images and output pixels whose input pixel lies inside the h x wd image,
/// sum x[n][iy][ix][ci] dy[n][oy][ox][co].
template <class Acc, class T, class I>
inline Acc conv2d_weight_grad(I batch, I h, I wd, I oh, I ow, I stride, I pad, I cin, I cout, const T* x,
                              const T* dy, I kh, I kw, I ci, I co) {
  Acc acc = 0;
  for (I n = 0; n < batch; ++n)
    for (I oy = 0; oy < oh; ++oy) {
      const I iy = oy * stride - pad + kh;
      if (iy < 0 || iy >= h) continue;
      for (I ox = 0; ox < ow; ++ox) {
        const I ix = ox * stride - pad + kw;
        if (ix < 0 || ix >= wd) continue;
        acc += Acc(x[((n * h + iy) * wd + ix) * cin + ci]) * Acc(dy[((n * oh + oy) * ow + ox) * cout + co]);
      }
    }
  return acc;
}

/// dx = y * (dy - sum_j y dy) over one row of len values (softmax's backward), the sum in
/// Acc. dx may alias dy.
template <class Acc, class T>
inline void softmax_row_backward(const T* y, const T* dy, T* dx, index_t len) {
  Acc dot = 0;
  for (index_t j = 0; j < len; ++j) dot += Acc(y[j]) * Acc(dy[j]);
  for (index_t j = 0; j < len; ++j) dx[j] = T(Acc(y[j]) * (Acc(dy[j]) - dot));
}

}  // namespace diffuse::kernels::elements
