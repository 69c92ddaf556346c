// Global average pooling: the mean of every channel over an image's pixels, (N, H, W, C)
// -> (N, C), as torch.nn.AdaptiveAvgPool2d(1) followed by a flatten. No parameters. The
// classifier of metrics/classifier.hpp takes its features here.
#pragma once

#include "diffuse/nn/layer.hpp"

namespace diffuse::nn {

/// y[n, c] = mean over (i, j) of x[n, i, j, c].
template <class T, std::size_t H, std::size_t W, std::size_t C>
struct GlobalAvgPool {
  using In = Shape<dyn, H, W, C>;  ///< (N, H, W, C)
  using Out = Shape<dyn, C>;  ///< (N, C)
  static constexpr std::size_t param_count = 0;  ///< No parameters.

  /// y = the per-channel means of x.
  static void forward(TensorView<const T, In> x /*(N,H,W,C)*/, TensorView<T, Out> y /*(N,C)*/) {
    check_batch(x.batch(), y.batch(), "GlobalAvgPool::forward");
    const std::size_t n = x.batch();
    parallel_for_items(n, H * W * C, [&](std::size_t i) {
      const T* xi = x.data() + i * H * W * C;
      T* yi = y.data() + i * C;
      for (std::size_t c = 0; c < C; ++c) yi[c] = T(0);
      for (std::size_t p = 0; p < H * W; ++p)
        for (std::size_t c = 0; c < C; ++c) yi[c] += xi[p * C + c];
      for (std::size_t c = 0; c < C; ++c) yi[c] *= T(1) / T(H * W);
    });
  }
  /// dx = beta * dx + dy / (H W), spread over every pixel.
  static void backward(TensorView<const T, Out> dy /*(N,C)*/, TensorView<T, In> dx /*(N,H,W,C)*/, T beta = T(0)) {
    check_batch(dx.batch(), dy.batch(), "GlobalAvgPool::backward");
    parallel_for_items(dx.batch(), H * W * C, [&](std::size_t i) {
      const T* g = dy.data() + i * C;
      T* d = dx.data() + i * H * W * C;
      for (std::size_t p = 0; p < H * W; ++p)
        for (std::size_t c = 0; c < C; ++c)
          d[p * C + c] = (beta == T(0) ? T(0) : beta * d[p * C + c]) + g[c] / T(H * W);
    });
  }
  /// Visits nothing (no parameters).
  template <class F>
  void visit_params(F&, ParamName&) {}
};

}  // namespace diffuse::nn
