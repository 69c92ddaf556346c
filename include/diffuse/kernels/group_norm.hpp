// GroupNorm with its fusions on NHWC activations: y = act(GN(x) * (1 + scale) + shift),
// where GN is GroupNorm with affine weight gamma and bias beta, scale/shift are optional
// per-image, per-channel vectors (a ResBlock's adaptive modulation) and act is SiLU or
// identity. Forward and backward.
//
//   x, y, dy, dx  [N][HW][C]     stats  [N][G][2] (mean, 1/sqrt(var + eps))
//   gamma, beta, dgamma, dbeta  [C]     ss, dss  [N][2C] (scale | shift) or null
//
// Groups are runs of C / G consecutive channels. The channel and group counts are
// template arguments (per-channel sums live on the stack, and the per-channel passes are
// expressions over Shape<dyn, C>); the batch N and the pixel count HW are run-time sizes.
//
// Statistics are in double for float inputs: two passes, the mean, then the squared
// deviations. One pass then reads x and writes y. Backward recomputes the pre-activation
// from x and the saved statistics instead of keeping it. Images go in parallel
// (parallel_for_items); the parameter gradients are summed in image order afterwards,
// so every result is the same for any thread count.
//
// PyTorch equivalent: torch.nn.functional.group_norm(x, G, gamma, beta, eps) (NCHW there),
// then the modulation and torch.nn.functional.silu.
#pragma once

#include <cmath>
#include <cstddef>

#include "diffuse/core/functors.hpp"
#include "diffuse/core/ops.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/kernels/offload.hpp"

namespace diffuse::kernels {

namespace detail {

/// One image's affine coefficients: the pre-activation is v = x * a[c] + b[c].
template <class T, std::size_t C, std::size_t G>
void group_norm_coefficients(const T* stats /*[G][2]*/, const T* gamma /*[C]*/, const T* beta /*[C]*/,
                             const T* ss /*[2C] or null*/, T* a /*[C]*/, T* b /*[C]*/) {
  constexpr std::size_t CG = C / G;
  for (std::size_t c = 0; c < C; ++c) {
    const T mean = stats[2 * (c / CG)], rstd = stats[2 * (c / CG) + 1];
    const T m = ss ? T(1) + ss[c] : T(1);
    a[c] = rstd * gamma[c] * m;
    b[c] = (beta[c] - mean * rstd * gamma[c]) * m + (ss ? ss[C + c] : T(0));
  }
}

}  // namespace detail

/// y = act(GN(x) * (1 + scale) + shift) over n images of hw pixels, act = SiLU when
/// `silu`; stats[i][g] = (mean, 1/sqrt(var + eps)) of group g of image i, kept for
/// backward. ss: (scale | shift) per image, or nullptr for none. y may alias x.
template <class T, std::size_t C, std::size_t G>
void group_norm_forward(const T* x /*[n][hw][C]*/, T* y /*[n][hw][C]*/, T* stats /*[n][G][2]*/,
                        const T* gamma /*[C]*/, const T* beta /*[C]*/, const T* ss /*[n][2C] or null*/,
                        bool silu, std::size_t n, std::size_t hw, double eps) {
  static_assert(G > 0 && C % G == 0, "diffuse::kernels::group_norm_forward: channels must be divisible by groups");
  if (diffuse::detail::on_device()) {
    device::group_norm_forward<T, C, G>(diffuse::detail::device_address(x), diffuse::detail::device_address(y), diffuse::detail::device_address(stats), diffuse::detail::device_address(gamma), diffuse::detail::device_address(beta), diffuse::detail::device_address(ss), silu, n, hw,
                                        eps);
    return;
  }
  constexpr std::size_t CG = C / G;
  const double count = double(hw * CG);
  parallel_for_items(n, 2 * hw * C, [&](std::size_t i) {
    const T* xi = x + i * hw * C;
    double s[C] = {};
    for (std::size_t p = 0; p < hw; ++p)
      for (std::size_t c = 0; c < C; ++c) s[c] += double(xi[p * C + c]);
    double mean[G] = {};
    for (std::size_t c = 0; c < C; ++c) mean[c / CG] += s[c];
    double mc[C];
    for (std::size_t c = 0; c < C; ++c) mc[c] = mean[c / CG] / count;
    double v[C] = {};
    for (std::size_t p = 0; p < hw; ++p)
      for (std::size_t c = 0; c < C; ++c) {
        const double d = double(xi[p * C + c]) - mc[c];
        v[c] += d * d;
      }
    double var[G] = {};
    for (std::size_t c = 0; c < C; ++c) var[c / CG] += v[c];
    T* st = stats + i * G * 2;
    for (std::size_t g = 0; g < G; ++g) {
      st[2 * g] = T(mean[g] / count);
      st[2 * g + 1] = T(1.0 / std::sqrt(var[g] / count + eps));
    }
    alignas(tensor_alignment) T a[C];
    alignas(tensor_alignment) T b[C];
    detail::group_norm_coefficients<T, C, G>(st, gamma, beta, ss ? ss + i * 2 * C : nullptr, a, b);
    TensorView<const T, Shape<dyn, C>> X(xi, hw);
    TensorView<T, Shape<dyn, C>> Y(y + i * hw * C, hw);
    TensorView<const T, Shape<C>> A(a), B(b);
    if (silu) Y = diffuse::silu(X * per_channel(A) + per_channel(B));
    else Y = X * per_channel(A) + per_channel(B);
  });
}

/// Backward of group_norm_forward given its x, stats and dy = dL/dy:
/// dx = beta_dx * dx + dL/dx (beta_dx == 0 never reads dx); dgamma += dL/dgamma and
/// dbeta += dL/dbeta; dss = dL/d(scale | shift), overwritten, unless dss is null.
/// ws: n * hw * C elements of scratch, hw >= 2. dx may alias dy only when beta_dx is 0.
template <class T, std::size_t C, std::size_t G>
void group_norm_backward(const T* x /*[n][hw][C]*/, const T* stats /*[n][G][2]*/, const T* gamma /*[C]*/,
                         const T* beta /*[C]*/, const T* ss /*[n][2C] or null*/, bool silu,
                         const T* dy /*[n][hw][C]*/, T* dx /*[n][hw][C]*/, T beta_dx, T* dgamma /*[C]*/,
                         T* dbeta /*[C]*/, T* dss /*[n][2C] or null*/, T* ws /*[n][hw][C]*/, std::size_t n,
                         std::size_t hw) {
  if (diffuse::detail::on_device()) device::not_on_device("group_norm_backward");
  static_assert(G > 0 && C % G == 0, "diffuse::kernels::group_norm_backward: channels must be divisible by groups");
  constexpr std::size_t CG = C / G;
  const double count = double(hw * CG);
  // Each image leaves its per-channel sums in its own scratch slot; they are added to the
  // parameter gradients in image order afterwards, so the result is the same for any
  // thread count.
  parallel_for_items(n, 2 * hw * C, [&](std::size_t i) {
    const T* xi = x + i * hw * C;
    const T* dyi = dy + i * hw * C;
    const T* st = stats + i * G * 2;
    const T* ssi = ss ? ss + i * 2 * C : nullptr;
    T* gi = ws + i * hw * C;
    // g = dL/d(pre-activation)
    TensorView<const T, Shape<dyn, C>> X(xi, hw), DY(dyi, hw);
    TensorView<T, Shape<dyn, C>> Gv(gi, hw);
    if (silu) {
      alignas(tensor_alignment) T a[C];
      alignas(tensor_alignment) T b[C];
      detail::group_norm_coefficients<T, C, G>(st, gamma, beta, ssi, a, b);
      TensorView<const T, Shape<C>> A(a), B(b);
      Gv = diffuse::detail::make_map(fn::SiluBackward{}, X * per_channel(A) + per_channel(B), DY);
    } else {
      Gv = DY;
    }
    // Per channel: sum g and sum g * (x - mean).
    double mc[C];
    for (std::size_t c = 0; c < C; ++c) mc[c] = double(st[2 * (c / CG)]);
    double sg[C] = {}, sgd[C] = {};
    for (std::size_t p = 0; p < hw; ++p)
      for (std::size_t c = 0; c < C; ++c) {
        const double gv = double(gi[p * C + c]);
        sg[c] += gv;
        sgd[c] += gv * (double(xi[p * C + c]) - mc[c]);
      }
    // m = 1 + scale; y_gn = xhat * gamma + beta; sum g * xhat = rstd * sgd.
    double m1[G] = {}, m2[G] = {};
    alignas(tensor_alignment) T ca[C];
    alignas(tensor_alignment) T cb[C];
    alignas(tensor_alignment) T cd[C];
    for (std::size_t c = 0; c < C; ++c) {
      const double rstd = double(st[2 * (c / CG) + 1]);
      const double m = ssi ? 1.0 + double(ssi[c]) : 1.0;
      const double sgx = rstd * sgd[c];  // sum of g * xhat
      if (dss) {
        T* d = dss + i * 2 * C;
        d[c] = T(double(gamma[c]) * sgx + double(beta[c]) * sg[c]);  // d scale
        d[C + c] = T(sg[c]);                                           // d shift
      }
      m1[c / CG] += m * double(gamma[c]) * sg[c];
      m2[c / CG] += m * double(gamma[c]) * sgx;
    }
    for (std::size_t c = 0; c < C; ++c) {
      const std::size_t g = c / CG;
      const double rstd = double(st[2 * g + 1]);
      const double m = ssi ? 1.0 + double(ssi[c]) : 1.0;
      const double mu1 = m1[g] / count, mu2 = m2[g] / count;
      // dx = rstd * (g m gamma - mu1 - xhat mu2), xhat = (x - mean) rstd
      ca[c] = T(rstd * m * double(gamma[c]));
      cb[c] = T(-rstd * rstd * mu2);
      cd[c] = T(-rstd * mu1 + rstd * rstd * mu2 * mc[c]);
    }
    TensorView<T, Shape<dyn, C>> DX(dx + i * hw * C, hw);
    TensorView<const T, Shape<C>> CA(ca), CB(cb), CD(cd);
    TensorView<const T, Shape<dyn, C>> Gc(gi, hw);
    if (beta_dx == T(0)) DX = Gc * per_channel(CA) + X * per_channel(CB) + per_channel(CD);
    else if (beta_dx == T(1)) DX += Gc * per_channel(CA) + X * per_channel(CB) + per_channel(CD);
    else DX = beta_dx * DX + (Gc * per_channel(CA) + X * per_channel(CB) + per_channel(CD));
    // Keep this image's (sum g, sum g xhat) for the parameter gradients: reuse the first
    // 2C elements of its scratch (g is no longer needed).
    for (std::size_t c = 0; c < C; ++c) {
      gi[c] = T(sg[c]);
      gi[C + c] = T(double(st[2 * (c / CG) + 1]) * sgd[c]);
    }
  });
  // dgamma += sum_i m * sum g xhat, dbeta += sum_i m * sum g (in image order).
  for (std::size_t i = 0; i < n; ++i) {
    const T* rec = ws + i * hw * C;
    const T* ssi = ss ? ss + i * 2 * C : nullptr;
    for (std::size_t c = 0; c < C; ++c) {
      const T m = ssi ? T(1) + ssi[c] : T(1);
      dbeta[c] += m * rec[c];
      dgamma[c] += m * rec[C + c];
    }
  }
}

}  // namespace diffuse::kernels
