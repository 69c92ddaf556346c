// Nearest-neighbour resampling of NHWC activations: upsample by 2 in H and W (the UNet
// decoder) and its backward (each input pixel receives the sum of its 4 copies).
// Memory-bound copies; OpenMP over image rows. Not here: other factors or interpolations.
#pragma once

#include "diffuse/core/parallel.hpp"
#include "diffuse/kernels/index.hpp"
#include "diffuse/kernels/offload.hpp"

namespace diffuse::kernels {

/// y[n][2i+a][2j+b][c] = x[n][i][j][c] for a, b in {0, 1}.
template <class T>
void upsample2x_nearest_forward(const T* x /*[N][H][W][C]*/, T* y /*[N][2H][2W][C]*/,
                                index_t n, index_t h, index_t w, index_t c) {
  if (diffuse::detail::on_device()) {
    if (n > 0) device::upsample2x_nearest_forward<T>(diffuse::detail::device_address(x), diffuse::detail::device_address(y), n, h, w, c);
    return;
  }
  const index_t rows = n * h;
  parallel_for(rows, threads_for(std::size_t(5 * rows * w * c)), [&](index_t r) {
    const T* src = x + r * w * c;
    T* d0 = y + (2 * r) * (2 * w) * c;  // output rows 2i and 2i+1 of image n are 2r, 2r+1
    T* d1 = d0 + 2 * w * c;
    for (index_t j = 0; j < w; ++j) {
      const T* s = src + j * c;
      T* a = d0 + 2 * j * c;
      T* b = d1 + 2 * j * c;
      for (index_t q = 0; q < c; ++q) {
        a[q] = s[q];
        a[c + q] = s[q];
        b[q] = s[q];
        b[c + q] = s[q];
      }
    }
  });
}

/// dx = beta * dx + sum of dy over each 2x2 block (beta == 0 never reads dx).
template <class T>
void upsample2x_nearest_backward(const T* dy /*[N][2H][2W][C]*/, T* dx /*[N][H][W][C]*/,
                                 index_t n, index_t h, index_t w, index_t c, T beta = T(0)) {
  if (diffuse::detail::on_device()) {
    using diffuse::detail::device_address;
    if (n > 0) device::upsample2x_nearest_backward<T>(device_address(dy), device_address(dx), n, h, w, c, beta);
    return;
  }
  const index_t rows = n * h;
  parallel_for(rows, threads_for(std::size_t(5 * rows * w * c)), [&](index_t r) {
    T* d = dx + r * w * c;
    const T* s0 = dy + (2 * r) * (2 * w) * c;
    const T* s1 = s0 + 2 * w * c;
    for (index_t j = 0; j < w; ++j) {
      const T* a = s0 + 2 * j * c;
      const T* b = s1 + 2 * j * c;
      T* o = d + j * c;
      for (index_t q = 0; q < c; ++q) {
        const T sum = (a[q] + a[c + q]) + (b[q] + b[c + q]);
        o[q] = beta == T(0) ? sum : beta * o[q] + sum;
      }
    }
  });
}

}  // namespace diffuse::kernels
