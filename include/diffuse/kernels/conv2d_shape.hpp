// The sizes of one 2-D convolution, shared by the host kernels, the device kernels and
// the naive twins.
#pragma once

#include "diffuse/kernels/index.hpp"

namespace diffuse::kernels {

/// Sizes of one convolution (NHWC, square kernel, symmetric zero padding).
struct Conv2dShape {
  ///@{
  /// Batch, input height and width, input and output channels, kernel size, stride and
  /// zero padding (on every side).
  index_t n = 1, h = 1, w = 1, cin = 1, cout = 1, k = 1, stride = 1, pad = 0;
  ///@}
  ///@{
  /// Output height and width: (h + 2 pad - k) / stride + 1, likewise for w.
  index_t oh() const noexcept { return (h + 2 * pad - k) / stride + 1; }
  index_t ow() const noexcept { return (w + 2 * pad - k) / stride + 1; }
  ///@}
  index_t pixels() const noexcept { return n * oh() * ow(); }  ///< P, rows of the GEMM
  index_t kk() const noexcept { return k * k * cin; }          ///< depth of the forward GEMM
  /// Multiply-adds x 2 of the forward pass (the same count holds for each backward).
  double flops() const noexcept { return 2.0 * double(pixels()) * double(kk()) * double(cout); }
};

}  // namespace diffuse::kernels
