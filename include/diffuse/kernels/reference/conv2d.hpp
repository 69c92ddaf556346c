// Naive twins of kernels/conv2d.hpp for the tests: direct loops over the definition,
// accumulation in double, same layouts (NHWC activations, HWIO weights) and beta rule.
#pragma once

#include "diffuse/kernels/conv2d.hpp"
#include "diffuse/kernels/elements.hpp"

namespace diffuse::kernels::reference {

/// y = beta * y + conv(x, w) + bias.
template <class T>
void conv2d_forward(const Conv2dShape& s, const T* x /*[N][H][W][Cin]*/,
                    const T* w /*[k][k][Cin][Cout]*/, const T* bias /*[Cout] or null*/,
                    T* y /*[N][OH][OW][Cout]*/, T beta = T(0)) {
  const index_t oh = s.oh(), ow = s.ow();
  for (index_t n = 0; n < s.n; ++n)
    for (index_t oy = 0; oy < oh; ++oy)
      for (index_t ox = 0; ox < ow; ++ox)
        for (index_t co = 0; co < s.cout; ++co) {
          const double acc = (bias ? double(bias[co]) : 0.0) + elements::conv2d_dot<double>(s, x, w, n, oy, ox, co);
          T& out = y[((n * oh + oy) * ow + ox) * s.cout + co];
          out = T(beta == T(0) ? acc : double(beta) * double(out) + acc);
        }
}

/// dx = beta * dx + conv^T(dy, w).
template <class T>
void conv2d_backward_input(const Conv2dShape& s, const T* dy /*[N][OH][OW][Cout]*/,
                           const T* w /*[k][k][Cin][Cout]*/, T* dx /*[N][H][W][Cin]*/,
                           T beta = T(0)) {
  for (index_t n = 0; n < s.n; ++n)
    for (index_t iy = 0; iy < s.h; ++iy)
      for (index_t ix = 0; ix < s.w; ++ix)
        for (index_t ci = 0; ci < s.cin; ++ci) {
          const double acc = elements::conv2d_input_grad<double>(s.oh(), s.ow(), s.k, s.stride, s.pad, s.cin,
                                                                 s.cout, dy, w, n, iy, ix, ci);
          T& out = dx[((n * s.h + iy) * s.w + ix) * s.cin + ci];
          out = T(beta == T(0) ? acc : double(beta) * double(out) + acc);
        }
}

/// dw = beta * dw + sum over pixels of x-window * dy, db = beta * db + sum of dy.
template <class T>
void conv2d_backward_weight(const Conv2dShape& s, const T* x /*[N][H][W][Cin]*/,
                            const T* dy /*[N][OH][OW][Cout]*/, T* dw /*[k][k][Cin][Cout]*/,
                            T* db /*[Cout] or null*/, T beta = T(0)) {
  for (index_t kh = 0; kh < s.k; ++kh)
    for (index_t kw = 0; kw < s.k; ++kw)
      for (index_t ci = 0; ci < s.cin; ++ci)
        for (index_t co = 0; co < s.cout; ++co) {
          const double acc = elements::conv2d_weight_grad<double>(s.n, s.h, s.w, s.oh(), s.ow(), s.stride, s.pad,
                                                                  s.cin, s.cout, x, dy, kh, kw, ci, co);
          T& out = dw[((kh * s.k + kw) * s.cin + ci) * s.cout + co];
          out = T(beta == T(0) ? acc : double(beta) * double(out) + acc);
        }
  if (db)
    for (index_t co = 0; co < s.cout; ++co) {
      double acc = 0;
      for (index_t p = 0; p < s.pixels(); ++p) acc += double(dy[p * s.cout + co]);
      db[co] = T(beta == T(0) ? acc : double(beta) * double(db[co]) + acc);
    }
}

}  // namespace diffuse::kernels::reference
