// Conversions between the library's layouts and PyTorch's: activations NCHW <-> NHWC and
// convolution weights OIHW <-> HWIO ([kh][kw][Cin][Cout]). Plain copies, for loading
// checkpoints and comparing with PyTorch fixtures; not for hot loops.
#pragma once

#include "diffuse/kernels/detail/gemm_core.hpp"

namespace diffuse::kernels {

/// dst[n][y][x][c] = src[n][c][y][x].
template <class T>
void nchw_to_nhwc(const T* src /*[N][C][H][W]*/, T* dst /*[N][H][W][C]*/, index_t n,
                  index_t c, index_t h, index_t w) {
  for (index_t i = 0; i < n; ++i)
    for (index_t ch = 0; ch < c; ++ch)
      for (index_t p = 0; p < h * w; ++p) dst[(i * h * w + p) * c + ch] = src[(i * c + ch) * h * w + p];
}

/// dst[n][c][y][x] = src[n][y][x][c].
template <class T>
void nhwc_to_nchw(const T* src /*[N][H][W][C]*/, T* dst /*[N][C][H][W]*/, index_t n,
                  index_t c, index_t h, index_t w) {
  for (index_t i = 0; i < n; ++i)
    for (index_t ch = 0; ch < c; ++ch)
      for (index_t p = 0; p < h * w; ++p) dst[(i * c + ch) * h * w + p] = src[(i * h * w + p) * c + ch];
}

/// dst[kh][kw][ci][co] = src[co][ci][kh][kw] (PyTorch Conv2d.weight -> diffuse).
template <class T>
void oihw_to_hwio(const T* src /*[Cout][Cin][k][k]*/, T* dst /*[k][k][Cin][Cout]*/,
                  index_t cout, index_t cin, index_t k) {
  for (index_t co = 0; co < cout; ++co)
    for (index_t ci = 0; ci < cin; ++ci)
      for (index_t t = 0; t < k * k; ++t) dst[(t * cin + ci) * cout + co] = src[(co * cin + ci) * k * k + t];
}

/// dst[co][ci][kh][kw] = src[kh][kw][ci][co] (diffuse -> PyTorch Conv2d.weight).
template <class T>
void hwio_to_oihw(const T* src /*[k][k][Cin][Cout]*/, T* dst /*[Cout][Cin][k][k]*/,
                  index_t cout, index_t cin, index_t k) {
  for (index_t co = 0; co < cout; ++co)
    for (index_t ci = 0; ci < cin; ++ci)
      for (index_t t = 0; t < k * k; ++t) dst[(co * cin + ci) * k * k + t] = src[(t * cin + ci) * cout + co];
}

}  // namespace diffuse::kernels
