// Naive twins of kernels/resample.hpp for the tests.
#pragma once

#include "diffuse/kernels/index.hpp"

namespace diffuse::kernels::reference {

/// y[n][Y][X][c] = x[n][Y/2][X/2][c].
template <class T>
void upsample2x_nearest_forward(const T* x /*[N][H][W][C]*/, T* y /*[N][2H][2W][C]*/,
                                index_t n, index_t h, index_t w, index_t c) {
  for (index_t i = 0; i < n; ++i)
    for (index_t yy = 0; yy < 2 * h; ++yy)
      for (index_t xx = 0; xx < 2 * w; ++xx)
        for (index_t q = 0; q < c; ++q)
          y[((i * 2 * h + yy) * 2 * w + xx) * c + q] = x[((i * h + yy / 2) * w + xx / 2) * c + q];
}

/// dx = beta * dx + sum over each 2x2 block of dy.
template <class T>
void upsample2x_nearest_backward(const T* dy /*[N][2H][2W][C]*/, T* dx /*[N][H][W][C]*/,
                                 index_t n, index_t h, index_t w, index_t c, T beta = T(0)) {
  for (index_t i = 0; i < n; ++i)
    for (index_t yy = 0; yy < h; ++yy)
      for (index_t xx = 0; xx < w; ++xx)
        for (index_t q = 0; q < c; ++q) {
          double s = 0;
          for (index_t a = 0; a < 2; ++a)
            for (index_t b = 0; b < 2; ++b)
              s += double(dy[((i * 2 * h + 2 * yy + a) * 2 * w + 2 * xx + b) * c + q]);
          T& o = dx[((i * h + yy) * w + xx) * c + q];
          o = T(beta == T(0) ? s : double(beta) * double(o) + s);
        }
}

}  // namespace diffuse::kernels::reference
