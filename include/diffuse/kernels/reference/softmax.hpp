// Naive twins of kernels/softmax.hpp for the tests: the definitions, in double.
#pragma once

#include <algorithm>
#include <cmath>

#include "diffuse/kernels/elements.hpp"
#include "diffuse/kernels/index.hpp"

namespace diffuse::kernels::reference {

/// y[r][j] = exp(x[r][j] - max x[r]) / sum_j exp(x[r][j] - max x[r]).
template <class T>
void softmax_rows(const T* x /*[rows][ld]*/, T* y /*[rows][ld]*/, index_t rows, index_t len, index_t ld) {
  for (index_t r = 0; r < rows; ++r) elements::softmax_row<double>(x + r * ld, y + r * ld, len);
}

/// dx[r][j] = y[r][j] * (dy[r][j] - sum_k y[r][k] dy[r][k]).
template <class T>
void softmax_rows_backward(const T* y /*[rows][ld]*/, const T* dy /*[rows][ld]*/, T* dx /*[rows][ld]*/,
                           index_t rows, index_t len, index_t ld) {
  for (index_t r = 0; r < rows; ++r) elements::softmax_row_backward<double>(y + r * ld, dy + r * ld, dx + r * ld, len);
}

}  // namespace diffuse::kernels::reference
