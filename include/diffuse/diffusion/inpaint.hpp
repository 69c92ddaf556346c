// Inpainting with any sampler: regenerate the pixels a mask marks and keep the others.
//
// The denoiser is wrapped so that its estimate of the known pixels is the known image y:
//   D'(x; sigma) = y + m (D(x; sigma) - y),   m = 1 where pixels are regenerated, 0 where kept.
// Along the sampler's ODE the known pixels then follow dx/dsigma = (x - y) / sigma, i.e.
// x = y + sigma n: the known region is the given image re-noised to every step's sigma
// (what diffusers' and stable-diffusion.cpp's latent blending do after each step), and it
// ends at y exactly, while the regenerated region is denoised with the known one as its
// context. Soft masks (values between 0 and 1) blend the two.
#pragma once

#include <span>

#include "diffuse/core/tensor.hpp"

namespace diffuse::diffusion {

/// out = known + mask (out - known), element-wise. All (N, H, W, C); mask in [0, 1].
template <class Batch>
void keep_known(TensorView<float, Batch> out, TensorView<const float, Batch> known, TensorView<const float, Batch> mask) {
  out = known + mask * (out - known);
}

/// A denoiser that keeps the known pixels: inner's estimate, then keep_known. `known` and
/// `mask` are views of the images being sampled (the same batch as x).
template <class Inner, class Batch>
struct Inpainting {
  Inner& inner;                          ///< the denoiser (Precond, Guided, ...)
  TensorView<const float, Batch> known;  ///< the known images y, (N, H, W, C), in [-1, 1]
  TensorView<const float, Batch> mask;   ///< 1: regenerate, 0: keep, (N, H, W, C)

  /// out = D'(x; sigma) (see the top of this header).
  void operator()(TensorView<const float, Batch> x, float sigma, TensorView<float, Batch> out) {
    inner(x, sigma, out);
    keep_known(out, known, mask);
  }
  /// The same with one sigma per image, sigma [N] (for an inner denoiser that takes them:
  /// DpmAdaptive).
  void operator()(TensorView<const float, Batch> x, std::span<const float> sigma, TensorView<float, Batch> out)
    requires requires(Inner& d, TensorView<const float, Batch> a, std::span<const float> s, TensorView<float, Batch> o) {
      d(a, s, o);
    }
  {
    inner(x, sigma, out);
    keep_known(out, known, mask);
  }
};

}  // namespace diffuse::diffusion
