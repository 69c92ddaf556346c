// Softmax along rows and its backward: `rows` rows of `len` elements, row r at
// x + r * ld (ld >= len; ld == len for a contiguous block). Attention runs it over the
// (N, Heads, P, P) scores, N * Heads * P rows of length P.
//
// Forward subtracts the row maximum before exp and sums in double; backward is
// dx = y * (dy - sum_j y dy) with the dot product in double. Rows go in parallel
// (threads_for), each row on one thread, so the results are the same for any thread
// count. Not here: masks, a temperature (scale the scores before the call).
//
// PyTorch equivalent: torch.softmax(x, dim=-1) and its autograd backward.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "diffuse/core/parallel.hpp"
#include "diffuse/kernels/index.hpp"
#include "diffuse/kernels/offload.hpp"

namespace diffuse::kernels {

/// y[r][j] = exp(x[r][j] - max_j x[r]) / sum_j exp(x[r][j] - max_j x[r]) for len >= 1.
/// y may alias x.
template <class T>
void softmax_rows(const T* x /*[rows][ld]*/, T* y /*[rows][ld]*/, index_t rows, index_t len, index_t ld) {
  if (diffuse::detail::on_device()) {
    if (rows > 0) device::softmax_rows<T>(diffuse::detail::device_address(x), diffuse::detail::device_address(y), rows, len, ld);
    return;
  }
  parallel_for(rows, threads_for(std::size_t(2 * rows * len)), [&](index_t r) {
    const T* xr = x + r * ld;
    T* yr = y + r * ld;
    T m = xr[0];
    for (index_t j = 1; j < len; ++j) m = std::max(m, xr[j]);
    double s = 0;
    for (index_t j = 0; j < len; ++j) {
      yr[j] = std::exp(xr[j] - m);
      s += double(yr[j]);
    }
    const T inv = T(1.0 / s);
    for (index_t j = 0; j < len; ++j) yr[j] *= inv;
  });
}

/// dx = y * (dy - sum_j y dy) row by row, given the softmax output y and dy = dL/dy.
/// dx may alias dy.
template <class T>
void softmax_rows_backward(const T* y /*[rows][ld]*/, const T* dy /*[rows][ld]*/, T* dx /*[rows][ld]*/,
                           index_t rows, index_t len, index_t ld) {
  if (diffuse::detail::on_device()) {
    using diffuse::detail::device_address;
    device::softmax_rows_backward<T>(device_address(y), device_address(dy), device_address(dx), rows, len, ld);
    return;
  }
  parallel_for(rows, threads_for(std::size_t(2 * rows * len)), [&](index_t r) {
    const T* yr = y + r * ld;
    const T* dyr = dy + r * ld;
    T* dxr = dx + r * ld;
    double dot = 0;
    for (index_t j = 0; j < len; ++j) dot += double(yr[j]) * double(dyr[j]);
    for (index_t j = 0; j < len; ++j) dxr[j] = yr[j] * (dyr[j] - T(dot));
  });
}

}  // namespace diffuse::kernels
