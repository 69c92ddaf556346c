// GroupNorm with its fusions on NHWC activations: y = act(GN(x) * (1 + scale) + shift),
// where GN is GroupNorm with affine weight gamma and bias beta, scale/shift are optional
// per-image, per-channel vectors (a ResBlock's adaptive modulation) and act is SiLU or
// identity. Forward and backward.
//
//   x, y, dy, dx  [N][HW][C]     stats  [N][G][2] (mean, 1/sqrt(var + eps))
//   gamma, beta, dgamma, dbeta  [C]     ss, dss  [N][2C] (scale | shift) or null
//
// Groups are runs of C / G consecutive channels. All sizes are run-time values, so one
// compiled kernel serves every layer (float: once per program with
// DIFFUSE_EXTERN_FLOAT_KERNELS, kernels/float_instances.hpp); the <T, C, G> overloads
// check the counts at compile time and call it. Per-channel sums live in per-thread
// scratch: no allocation after the first call.
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

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <numeric>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "diffuse/core/functors.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/kernels/detail/gemm_core.hpp"
#include "diffuse/kernels/offload.hpp"

namespace diffuse::kernels {

namespace detail {

/// Throws std::invalid_argument unless `groups` divides `channels` and the n images have at
/// least `min_pixels` pixels each (backward keeps 2C sums in each image's hw * C scratch).
inline void check_group_norm_sizes(const char* kernel, std::size_t channels, std::size_t groups,
                                   std::size_t min_pixels, std::size_t n, std::size_t hw) {
  if (groups == 0 || channels % groups != 0)
    throw std::invalid_argument(std::string("diffuse::kernels::") + kernel + ": " + std::to_string(channels) +
                                " channels are not divisible into " + std::to_string(groups) + " groups");
  if (n > 0 && hw < min_pixels)
    throw std::invalid_argument(std::string("diffuse::kernels::") + kernel + ": " + std::to_string(hw) +
                                " pixels per image, fewer than " + std::to_string(min_pixels));
}

/// One image's affine coefficients: the pre-activation is v = x * a[c] + b[c].
template <class T>
void group_norm_coefficients(const T* stats /*[G][2]*/, const T* gamma /*[C]*/, const T* beta /*[C]*/,
                             const T* ss /*[2C] or null*/, T* a /*[C]*/, T* b /*[C]*/, std::size_t channels,
                             std::size_t per_group) {
  for (std::size_t c = 0; c < channels; ++c) {
    const T mean = stats[2 * (c / per_group)], rstd = stats[2 * (c / per_group) + 1];
    const T m = ss ? T(1) + ss[c] : T(1);
    a[c] = rstd * gamma[c] * m;
    b[c] = (beta[c] - mean * rstd * gamma[c]) * m + (ss ? ss[channels + c] : T(0));
  }
}

/// Per-image scratch of the GroupNorm kernels, the calling thread's (kernels/detail/
/// gemm_core.hpp): slot 0 the double sums, slot 1 the T coefficients (distinct also when
/// T is double). No allocation once it is large enough.
template <class U, int Slot>
U* group_norm_scratch(std::size_t n) {
  return thread_scratch<U, Slot>(n);
}

/// Per-channel sums over hw pixels of `channels` values, in double: s1[c] += sum_p a[p][c]
/// and, when `Two`, s2[c] += sum_p a[p][c] (b[p][c] - center[c]) with b = a when `Square`
/// (then only s2). Each sum runs over the pixels in order.
template <bool Two, bool Square, class T, class Channels>
void channel_sums(const T* a, const T* b, const double* center, double* s1, double* s2, std::size_t hw,
                      Channels channels) {
  for (std::size_t p = 0; p < hw; ++p)
    for (std::size_t c = 0; c < channels; ++c) {
      const double av = double(a[p * channels + c]);
      if constexpr (Two && Square) {
        const double d = av - center[c];
        s2[c] += d * d;
      } else {
        s1[c] += av;
        if constexpr (Two) s2[c] += av * (double(b[p * channels + c]) - center[c]);
      }
    }
}

/// Calls f(channels) with the channel count as a std::integral_constant for the counts
/// UNets use (the per-channel loops then unroll and keep their sums in registers: up to
/// 2x faster), as a plain size otherwise.
template <class F>
void with_channel_count(std::size_t channels, F&& f) {
  auto fixed = [&]<std::size_t C>(std::integral_constant<std::size_t, C> k) { f(k); };
  switch (channels) {
    case 16: return fixed(std::integral_constant<std::size_t, 16>{});
    case 32: return fixed(std::integral_constant<std::size_t, 32>{});
    case 48: return fixed(std::integral_constant<std::size_t, 48>{});
    case 64: return fixed(std::integral_constant<std::size_t, 64>{});
    case 96: return fixed(std::integral_constant<std::size_t, 96>{});
    case 128: return fixed(std::integral_constant<std::size_t, 128>{});
    case 192: return fixed(std::integral_constant<std::size_t, 192>{});
    case 256: return fixed(std::integral_constant<std::size_t, 256>{});
    default: return f(channels);
  }
}

/// The period of a pointwise pass's coefficients along a flat image: C when W divides it,
/// else lcm(C, W), so that W consecutive elements read W consecutive coefficients.
template <class T, class Channels>
std::size_t coefficient_period(Channels channels) {
  constexpr std::size_t W = simd_width<T>;
  return channels % W == 0 ? std::size_t(channels) : std::lcm(std::size_t(channels), W);
}

/// `count` arrays of `channels` coefficients, each repeated to `period` values, one after
/// the other in the calling thread's scratch.
template <class T>
const T* repeat_coefficients(std::initializer_list<const T*> arrays, std::size_t channels, std::size_t period) {
  T* out = group_norm_scratch<T, 2>(arrays.size() * period);
  std::size_t k = 0;
  for (const T* src : arrays)
    for (std::size_t j = 0; j < period; ++j) out[k++] = src[j % channels];
  return out;
}

/// dx = beta_dx * dx + (g * ca[c] + x * cb[c] + cd[c]) over hw pixels (beta_dx == 0 never
/// reads dx). The image is one flat SIMD pass with a scalar tail, for any C.
template <class T, class Channels>
void group_norm_dx(const T* g, const T* x, const T* ca, const T* cb, const T* cd, T* dx, T beta_dx, std::size_t hw,
                   Channels channels) {
  using B = simd<T>;
  constexpr std::size_t W = simd_width<T>;
  const std::size_t n = hw * channels, body = n / W * W, period = coefficient_period<T>(channels);
  const T *pa = ca, *pb = cb, *pd = cd;
  if (period != std::size_t(channels)) {
    pa = repeat_coefficients<T>({ca, cb, cd}, channels, period);
    pb = pa + period;
    pd = pb + period;
  }
  std::size_t off = 0;
  for (std::size_t i = 0; i < body; i += W) {
    B v = B::load_unaligned(g + i) * B::load_unaligned(pa + off) + B::load_unaligned(x + i) * B::load_unaligned(pb + off) +
          B::load_unaligned(pd + off);
    if (beta_dx != T(0)) v += B(beta_dx) * B::load_unaligned(dx + i);
    v.store_unaligned(dx + i);
    off += W;
    if (off == period) off = 0;
  }
  for (std::size_t i = body; i < n; ++i) {
    const std::size_t c = i % channels;
    T v = g[i] * ca[c] + x[i] * cb[c] + cd[c];
    if (beta_dx != T(0)) v += beta_dx * dx[i];
    dx[i] = v;
  }
}

/// out[p][c] = f(x[p][c] * a[c] + b[c], g[p][c]) over hw pixels of `channels` values,
/// `Op` one of: 0 the affine map, 1 SiLU of it, 2 SiLU's gradient at it times g. One flat
/// SIMD pass over the image with a scalar tail, for any C.
template <int Op, class T, class Channels>
void group_norm_pointwise(const T* x, const T* g, const T* a, const T* b, T* out, std::size_t hw,
                          Channels channels) {
  using B = simd<T>;
  constexpr std::size_t W = simd_width<T>;
  auto apply = [](auto v, auto gv) {
    if constexpr (Op == 0) return v;
    else if constexpr (Op == 1) return fn::Silu{}.simd(v);
    else return fn::SiluBackward{}.simd(v, gv);
  };
  auto apply1 = [](T v, T gv) {
    if constexpr (Op == 0) return v;
    else if constexpr (Op == 1) return fn::Silu{}(v);
    else return fn::SiluBackward{}(v, gv);
  };
  const std::size_t n = hw * channels, body = n / W * W, period = coefficient_period<T>(channels);
  const T *pa = a, *pb = b;
  if (period != std::size_t(channels)) {
    pa = repeat_coefficients<T>({a, b}, channels, period);
    pb = pa + period;
  }
  std::size_t off = 0;
  for (std::size_t i = 0; i < body; i += W) {
    const B v = B::load_unaligned(x + i) * B::load_unaligned(pa + off) + B::load_unaligned(pb + off);
    const B gv = Op == 2 ? B::load_unaligned(g + i) : B(T(0));
    apply(v, gv).store_unaligned(out + i);
    off += W;
    if (off == period) off = 0;
  }
  for (std::size_t i = body; i < n; ++i) {
    const std::size_t c = i % channels;
    out[i] = apply1(x[i] * a[c] + b[c], Op == 2 ? g[i] : T(0));
  }
}

}  // namespace detail

/// y = act(GN(x) * (1 + scale) + shift) over n images of hw pixels of `channels` values in
/// `groups` groups, act = SiLU when `silu`; stats[i][g] = (mean, 1/sqrt(var + eps)) of
/// group g of image i, kept for backward. ss: (scale | shift) per image, or nullptr for
/// none. y may alias x. Throws std::invalid_argument unless groups divides channels and
/// hw >= 1 (for n > 0).
template <class T>
void group_norm_forward(const T* x /*[n][hw][C]*/, T* y /*[n][hw][C]*/, T* stats /*[n][G][2]*/,
                        const T* gamma /*[C]*/, const T* beta /*[C]*/, const T* ss /*[n][2C] or null*/,
                        bool silu, std::size_t n, std::size_t hw, std::size_t channels, std::size_t groups,
                        double eps) {
  detail::check_group_norm_sizes("group_norm_forward", channels, groups, 1, n, hw);
  if (diffuse::detail::on_device()) {
    using diffuse::detail::device_address;
    device::group_norm_forward<T>(device_address(x), device_address(y), device_address(stats),
                                  device_address(gamma), device_address(beta), device_address(ss), silu, n, hw,
                                  channels, groups, eps);
    return;
  }
  const std::size_t C = channels, G = groups, CG = C / G;
  const double count = double(hw * CG);
  parallel_for_items(n, 2 * hw * C, [&](std::size_t i) {
    const T* xi = x + i * hw * C;
    double* s = detail::group_norm_scratch<double, 0>(3 * C + 2 * G);  // sums, means, squares; per group
    double *mc = s + C, *v = s + 2 * C, *mean = s + 3 * C, *var = mean + G;
    std::fill(s, s + 3 * C + 2 * G, 0.0);
    detail::with_channel_count(C, [&](auto cs) { detail::channel_sums<false, false>(xi, xi, nullptr, s, nullptr, hw, cs); });
    for (std::size_t c = 0; c < C; ++c) mean[c / CG] += s[c];
    for (std::size_t c = 0; c < C; ++c) mc[c] = mean[c / CG] / count;
    detail::with_channel_count(C, [&](auto cs) { detail::channel_sums<true, true>(xi, xi, mc, nullptr, v, hw, cs); });
    for (std::size_t c = 0; c < C; ++c) var[c / CG] += v[c];
    T* st = stats + i * G * 2;
    for (std::size_t g = 0; g < G; ++g) {
      st[2 * g] = T(mean[g] / count);
      st[2 * g + 1] = T(1.0 / std::sqrt(var[g] / count + eps));
    }
    T* a = detail::group_norm_scratch<T, 1>(2 * C);
    T* b = a + C;
    detail::group_norm_coefficients<T>(st, gamma, beta, ss ? ss + i * 2 * C : nullptr, a, b, C, CG);
    detail::with_channel_count(C, [&](auto cs) {
      if (silu) detail::group_norm_pointwise<1>(xi, xi, a, b, y + i * hw * C, hw, cs);
      else detail::group_norm_pointwise<0>(xi, xi, a, b, y + i * hw * C, hw, cs);
    });
  });
}

/// group_norm_forward with the channel and group counts checked at compile time.
template <class T, std::size_t C, std::size_t G>
void group_norm_forward(const T* x /*[n][hw][C]*/, T* y /*[n][hw][C]*/, T* stats /*[n][G][2]*/,
                        const T* gamma /*[C]*/, const T* beta /*[C]*/, const T* ss /*[n][2C] or null*/,
                        bool silu, std::size_t n, std::size_t hw, double eps) {
  static_assert(G > 0 && C % G == 0, "diffuse::kernels::group_norm_forward: channels must be divisible by groups");
  group_norm_forward<T>(x, y, stats, gamma, beta, ss, silu, n, hw, C, G, eps);
}

/// Backward of group_norm_forward given its x, stats and dy = dL/dy:
/// dx = beta_dx * dx + dL/dx (beta_dx == 0 never reads dx); dgamma += dL/dgamma and
/// dbeta += dL/dbeta; dss = dL/d(scale | shift), overwritten, unless dss is null.
/// ws: n * hw * C elements of scratch. dx may alias dy only when beta_dx is 0. Throws
/// std::invalid_argument unless groups divides channels and hw >= 2 (for n > 0).
template <class T>
void group_norm_backward(const T* x /*[n][hw][C]*/, const T* stats /*[n][G][2]*/, const T* gamma /*[C]*/,
                         const T* beta /*[C]*/, const T* ss /*[n][2C] or null*/, bool silu,
                         const T* dy /*[n][hw][C]*/, T* dx /*[n][hw][C]*/, T beta_dx, T* dgamma /*[C]*/,
                         T* dbeta /*[C]*/, T* dss /*[n][2C] or null*/, T* ws /*[n][hw][C]*/, std::size_t n,
                         std::size_t hw, std::size_t channels, std::size_t groups) {
  detail::check_group_norm_sizes("group_norm_backward", channels, groups, 2, n, hw);
  if (diffuse::detail::on_device()) {
    using diffuse::detail::device_address;
    device::group_norm_backward<T>(device_address(x), device_address(stats), device_address(gamma),
                                   device_address(beta), device_address(ss), silu, device_address(dy),
                                   device_address(dx), beta_dx, device_address(dgamma), device_address(dbeta),
                                   device_address(dss), device_address(ws), n, hw, channels, groups);
    return;
  }
  const std::size_t C = channels, G = groups, CG = C / G;
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
    // coefficients (a, b of the pre-activation; then ca, cb, cd of dx)
    T* a = detail::group_norm_scratch<T, 1>(3 * C);
    T *b = a + C, *ca = a, *cb = a + C, *cd = a + 2 * C;
    // g = dL/d(pre-activation)
    if (silu) {
      detail::group_norm_coefficients<T>(st, gamma, beta, ssi, a, b, C, CG);
      detail::with_channel_count(C, [&](auto cs) { detail::group_norm_pointwise<2>(xi, dyi, a, b, gi, hw, cs); });
    } else {
      std::copy(dyi, dyi + hw * C, gi);
    }
    // Per channel: sum g and sum g * (x - mean).
    double* mc = detail::group_norm_scratch<double, 0>(3 * C + 2 * G);
    double *sg = mc + C, *sgd = mc + 2 * C, *m1 = mc + 3 * C, *m2 = m1 + G;
    std::fill(sg, sg + 2 * C + 2 * G, 0.0);
    for (std::size_t c = 0; c < C; ++c) mc[c] = double(st[2 * (c / CG)]);
    detail::with_channel_count(C, [&](auto cs) { detail::channel_sums<true, false>(gi, xi, mc, sg, sgd, hw, cs); });
    // m = 1 + scale; y_gn = xhat * gamma + beta; sum g * xhat = rstd * sgd.
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
    detail::with_channel_count(C, [&](auto cs) { detail::group_norm_dx(gi, xi, ca, cb, cd, dx + i * hw * C, beta_dx, hw, cs); });
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

/// group_norm_backward with the channel and group counts checked at compile time.
template <class T, std::size_t C, std::size_t G>
void group_norm_backward(const T* x /*[n][hw][C]*/, const T* stats /*[n][G][2]*/, const T* gamma /*[C]*/,
                         const T* beta /*[C]*/, const T* ss /*[n][2C] or null*/, bool silu,
                         const T* dy /*[n][hw][C]*/, T* dx /*[n][hw][C]*/, T beta_dx, T* dgamma /*[C]*/,
                         T* dbeta /*[C]*/, T* dss /*[n][2C] or null*/, T* ws /*[n][hw][C]*/, std::size_t n,
                         std::size_t hw) {
  static_assert(G > 0 && C % G == 0, "diffuse::kernels::group_norm_backward: channels must be divisible by groups");
  group_norm_backward<T>(x, stats, gamma, beta, ss, silu, dy, dx, beta_dx, dgamma, dbeta, dss, ws, n, hw, C, G);
}

}  // namespace diffuse::kernels

/// The float instantiations, `prefix` extern or empty (kernels/float_instances.hpp).
#define DIFFUSE_GROUP_NORM_FLOAT_INSTANCES(prefix)                                                            \
  namespace diffuse::kernels {                                                                               \
  prefix template void group_norm_forward<float>(const float*, float*, float*, const float*, const float*,     \
                                                 const float*, bool, std::size_t, std::size_t, std::size_t,    \
                                                 std::size_t, double);                                        \
  prefix template void group_norm_backward<float>(const float*, const float*, const float*, const float*,      \
                                                  const float*, bool, const float*, float*, float, float*,     \
                                                  float*, float*, float*, std::size_t, std::size_t,            \
                                                  std::size_t, std::size_t);                                   \
  }

#if defined(DIFFUSE_EXTERN_FLOAT_KERNELS)
DIFFUSE_GROUP_NORM_FLOAT_INSTANCES(extern)
#endif
