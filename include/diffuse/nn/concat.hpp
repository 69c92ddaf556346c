// Skip connections of the UNet decoder: concatenation along channels (NHWC: per pixel,
// the Ca channels of a then the Cb channels of b, as torch.cat(dim=1) on NCHW) and its
// backward, which splits the gradient and adds or stores each part.
#pragma once

#include <algorithm>

#include "diffuse/kernels/offload.hpp"
#include "diffuse/nn/layer.hpp"

namespace diffuse::nn {

/// out = cat(a, b) along channels.  a: (N,H,W,Ca), b: (N,H,W,Cb) -> out: (N,H,W,Ca+Cb).
template <class T, std::size_t H, std::size_t W, std::size_t Ca, std::size_t Cb>
void concat_channels(TensorView<const T, Shape<dyn, H, W, Ca>> a, TensorView<const T, Shape<dyn, H, W, Cb>> b,
                     TensorView<T, Shape<dyn, H, W, Ca + Cb>> out) {
  check_batch(a.batch(), out.batch(), "concat_channels");
  check_batch(b.batch(), out.batch(), "concat_channels");
  const std::size_t pixels = out.batch() * H * W;
  if (diffuse::detail::on_device()) {
    if (pixels) kernels::device::concat_channels<T>(diffuse::detail::device_address(a.data()), diffuse::detail::device_address(b.data()), diffuse::detail::device_address(out.data()), pixels, Ca, Cb);
    return;
  }
  const T* pa = a.data();
  const T* pb = b.data();
  T* po = out.data();
  parallel_for(pixels, threads_for(pixels * (Ca + Cb)), [&](std::size_t p) {
    std::copy_n(pa + p * Ca, Ca, po + p * (Ca + Cb));
    std::copy_n(pb + p * Cb, Cb, po + p * (Ca + Cb) + Ca);
  });
}

/// Backward of concat_channels: da = beta_a * da + dout[..., :Ca],
/// db = beta_b * db + dout[..., Ca:] (betas 0 or 1).
template <class T, std::size_t H, std::size_t W, std::size_t Ca, std::size_t Cb>
void concat_channels_backward(TensorView<const T, Shape<dyn, H, W, Ca + Cb>> dout,
                              TensorView<T, Shape<dyn, H, W, Ca>> da, T beta_a,
                              TensorView<T, Shape<dyn, H, W, Cb>> db, T beta_b) {
  check_batch(da.batch(), dout.batch(), "concat_channels_backward");
  check_batch(db.batch(), dout.batch(), "concat_channels_backward");
  const std::size_t pixels = dout.batch() * H * W;
  if (diffuse::detail::on_device()) {
    using diffuse::detail::device_address;
    if (pixels)
      kernels::device::concat_channels_backward<T>(device_address(dout.data()), device_address(da.data()), beta_a,
                                                   device_address(db.data()), beta_b, pixels, Ca, Cb);
    return;
  }
  const T* g = dout.data();
  T* pa = da.data();
  T* pb = db.data();
  const bool add_a = beta_a != T(0), add_b = beta_b != T(0);
  parallel_for(pixels, threads_for(pixels * (Ca + Cb)), [&](std::size_t p) {
    const T* src = g + p * (Ca + Cb);
    T* x = pa + p * Ca;
    T* y = pb + p * Cb;
    if (add_a) for (std::size_t c = 0; c < Ca; ++c) x[c] += src[c];
    else for (std::size_t c = 0; c < Ca; ++c) x[c] = src[c];
    if (add_b) for (std::size_t c = 0; c < Cb; ++c) y[c] += src[Ca + c];
    else for (std::size_t c = 0; c < Cb; ++c) y[c] = src[Ca + c];
  });
}

}  // namespace diffuse::nn
