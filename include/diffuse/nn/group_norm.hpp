// GroupNorm with its fusions: y = act(GN(x) * (1 + scale) + shift), where GN is
// GroupNorm with affine weight and bias (eps 1e-5), scale/shift are optional per-image,
// per-channel vectors (the ResBlock's adaptive modulation) and act is SiLU or identity.
// One pass reads x and writes y; backward recomputes the pre-activation from x and the
// saved per-group statistics instead of keeping it (memory is the scarcer resource).
//
// The kernels (nn::detail::group_norm_*) work on raw pointers with the channel and
// group counts as template arguments and the batch and pixel count at run time; the
// layer GroupNorm<T, H, W, C, G, Silu, Adaptive> owns the parameters and statistics.
// Statistics are in double for float inputs (two passes: mean, then squared deviations).
//
// PyTorch equivalent: torch.nn.GroupNorm(G, C, eps=1e-5) (+ the modulation and SiLU).
#pragma once

#include <algorithm>
#include <cmath>

#include "diffuse/core/functors.hpp"
#include "diffuse/nn/layer.hpp"

namespace diffuse::nn {
namespace detail {

/// silu'(v) * g, the gradient through SiLU at pre-activation v.
struct SiluBackward {
  template <class T> T operator()(T v, T g) const {
    const T s = T(1) / (T(1) + std::exp(-v));
    return g * s * (T(1) + v * (T(1) - s));
  }
  template <class B> B simd(const B& v, const B& g) const {
    const B s = B(1) / (B(1) + xsimd::exp(-v));
    return g * s * (B(1) + v * (B(1) - s));
  }
};

// Per-image affine coefficients: pre-activation v = x * a[c] + b[c].
template <class T, std::size_t C, std::size_t G>
void group_norm_coefficients(const T* stats /*[G][2] mean, rstd*/, const T* gamma, const T* beta,
                             const T* ss /*[2C] scale|shift or null*/, T* a /*[C]*/, T* b /*[C]*/) {
  constexpr std::size_t CG = C / G;
  for (std::size_t c = 0; c < C; ++c) {
    const T mean = stats[2 * (c / CG)], rstd = stats[2 * (c / CG) + 1];
    const T m = ss ? T(1) + ss[c] : T(1);
    a[c] = rstd * gamma[c] * m;
    b[c] = (beta[c] - mean * rstd * gamma[c]) * m + (ss ? ss[C + c] : T(0));
  }
}

/// Forward over n images of hw pixels: stats[i][g] = (mean, 1/sqrt(var + eps)) and
/// y = act(GN(x) * (1 + scale) + shift). y may alias x.
template <class T, std::size_t C, std::size_t G>
void group_norm_forward(const T* x /*[n][hw][C]*/, T* y /*[n][hw][C]*/, T* stats /*[n][G][2]*/,
                        const T* gamma /*[C]*/, const T* beta /*[C]*/, const T* ss /*[n][2C] or null*/,
                        bool silu, std::size_t n, std::size_t hw, double eps) {
  static_assert(C % G == 0, "diffuse::nn::GroupNorm: channels must be divisible by groups");
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
    group_norm_coefficients<T, C, G>(st, gamma, beta, ss ? ss + i * 2 * C : nullptr, a, b);
    TensorView<const T, Shape<dyn, C>> X(xi, hw);
    TensorView<T, Shape<dyn, C>> Y(y + i * hw * C, hw);
    TensorView<const T, Shape<C>> A(a), B(b);
    if (silu) Y = diffuse::silu(X * per_channel(A) + per_channel(B));
    else Y = X * per_channel(A) + per_channel(B);
  });
}

/// Backward: dx = beta_dx * dx + dL/dx; dgamma, dbeta += ...; dss = dL/d(scale|shift)
/// (overwritten). ws: n * hw * C elements of scratch. dx may alias dy only when beta_dx
/// is 0.
template <class T, std::size_t C, std::size_t G>
void group_norm_backward(const T* x /*[n][hw][C]*/, const T* stats /*[n][G][2]*/, const T* gamma,
                         const T* beta, const T* ss /*[n][2C] or null*/, bool silu,
                         const T* dy /*[n][hw][C]*/, T* dx /*[n][hw][C]*/, T beta_dx, T* dgamma /*[C]*/,
                         T* dbeta /*[C]*/, T* dss /*[n][2C] or null*/, T* ws /*[n][hw][C]*/, std::size_t n,
                         std::size_t hw) {
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
      group_norm_coefficients<T, C, G>(st, gamma, beta, ssi, a, b);
      TensorView<const T, Shape<C>> A(a), B(b);
      Gv = diffuse::detail::make_map(SiluBackward{}, X * per_channel(A) + per_channel(B), DY);
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
    else DX += Gc * per_channel(CA) + X * per_channel(CB) + per_channel(CD);
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

}  // namespace detail

/// GroupNorm(G groups, C channels, eps 1e-5, affine) on (N, H, W, C), optionally followed
/// by the modulation `* (1 + scale) + shift` (Adaptive) and SiLU (Silu).
template <class T, std::size_t H, std::size_t W, std::size_t C, std::size_t G, bool Silu = false,
          bool Adaptive = false>
struct GroupNorm {
  static_assert(G > 0 && C % G == 0, "diffuse::nn::GroupNorm: channels must be divisible by groups");
  static_assert(H * W >= 2, "diffuse::nn::GroupNorm: needs at least 2 pixels per image");
  using Act = Shape<dyn, H, W, C>;
  using Mod = Shape<dyn, 2 * C>;  ///< (scale | shift) per image
  static constexpr std::size_t param_count = 2 * C;
  static constexpr double eps = 1e-5;
  /// Saved per image: the (mean, rstd) of each group.
  static constexpr std::size_t activations_per_image = 2 * G;
  /// Scratch per image that backward needs (ws argument).
  static constexpr std::size_t workspace_per_image = H * W * C;

  Param<T, Shape<C>> weight;
  Param<T, Shape<C>> bias;
  Tensor<T, Shape<dyn, G, 2>> stats;  ///< (N, G, 2): mean, 1/sqrt(var + eps)

  GroupNorm() { init(); }
  /// PyTorch's default: weight 1, bias 0.
  void init() {
    weight.value = T(1);
    bias.value = T(0);
  }

  /// y = act(GN(x)); y may alias x.
  void forward(TensorView<const T, Act> x /*(N,H,W,C)*/, TensorView<T, Act> y /*(N,H,W,C)*/)
    requires(!Adaptive)
  {
    run_forward(x, nullptr, y);
  }
  /// y = act(GN(x) * (1 + scale) + shift), ss = (scale | shift) per image.
  void forward(TensorView<const T, Act> x /*(N,H,W,C)*/, TensorView<const T, Mod> ss /*(N,2C)*/,
               TensorView<T, Act> y /*(N,H,W,C)*/)
    requires(Adaptive)
  {
    check_batch(x.batch(), ss.batch(), "GroupNorm::forward");
    run_forward(x, ss.data(), y);
  }

  /// dx = beta * dx + dL/dx; weight/bias grads +=. ws: N * workspace_per_image.
  void backward(TensorView<const T, Act> x, TensorView<const T, Act> dy, TensorView<T, Act> dx, T beta, T* ws)
    requires(!Adaptive)
  {
    check_batch(x.batch(), dy.batch(), "GroupNorm::backward");
    check_batch(x.batch(), dx.batch(), "GroupNorm::backward");
    detail::group_norm_backward<T, C, G>(x.data(), stats.data(), weight.value.data(), bias.value.data(), nullptr,
                                         Silu, dy.data(), dx.data(), beta, weight.grad.data(), bias.grad.data(),
                                         nullptr, ws, x.batch(), H * W);
  }
  /// As above, and dss = dL/d(scale | shift) (overwritten).
  void backward(TensorView<const T, Act> x, TensorView<const T, Mod> ss, TensorView<const T, Act> dy,
                TensorView<T, Act> dx, T beta, TensorView<T, Mod> dss, T* ws)
    requires(Adaptive)
  {
    check_batch(x.batch(), dy.batch(), "GroupNorm::backward");
    check_batch(x.batch(), dss.batch(), "GroupNorm::backward");
    detail::group_norm_backward<T, C, G>(x.data(), stats.data(), weight.value.data(), bias.value.data(), ss.data(),
                                         Silu, dy.data(), dx.data(), beta, weight.grad.data(), bias.grad.data(),
                                         dss.data(), ws, x.batch(), H * W);
  }

  template <class F>
  void visit_params(F& f, ParamName& name) {
    detail::visit_param(f, name, "weight", weight);
    detail::visit_param(f, name, "bias", bias);
  }
  template <class F>
  void for_each_param(F&& f) { for_each_param_of(*this, f); }
  void zero_grad() { weight.zero_grad(); bias.zero_grad(); }

 private:
  void run_forward(TensorView<const T, Act> x, const T* ss, TensorView<T, Act> y) {
    check_batch(x.batch(), y.batch(), "GroupNorm::forward");
    stats.resize(x.batch());
    detail::group_norm_forward<T, C, G>(x.data(), y.data(), stats.data(), weight.value.data(), bias.value.data(), ss,
                                        Silu, x.batch(), H * W, eps);
  }
};

/// GroupNorm then SiLU (the ResBlock's first normalisation and the output head).
template <class T, std::size_t H, std::size_t W, std::size_t C, std::size_t G>
using GroupNormSiLU = GroupNorm<T, H, W, C, G, true, false>;

/// SiLU(GroupNorm(x) * (1 + scale) + shift): the ResBlock's adaptive normalisation.
template <class T, std::size_t H, std::size_t W, std::size_t C, std::size_t G>
using AdaGroupNormSiLU = GroupNorm<T, H, W, C, G, true, true>;

}  // namespace diffuse::nn
