// Self-attention over the spatial positions of an (N, H, W, C) activation, with a
// residual (DDPM++ / EDM "UNetBlock" attention):
//
//   q, k, v = split(Conv1x1(C -> 3C)(GN(x)))          channels [0,C) q, [C,2C) k, [2C,3C) v
//   per head h (channels [h D, (h+1) D), D = C / Heads):
//     A_h = softmax_rows(q_h k_h^T / sqrt(D))           (P x P, P = H W positions)
//     a_h = A_h v_h
//   y = (x + Conv1x1(C -> C)(a)) / sqrt(2)
//
// With one head this is the spec's softmax(q^T k / sqrt(c)) v. The matrix products are
// kernels::gemm_batched over the images, reading q, k, v in place with a row stride of 3C
// (no transposes are materialised); the softmax is kernels::softmax_rows over the rows of
// all heads at once. Keeps GN(x), qkv, A and a for backward.
#pragma once

#include <cmath>

#include "diffuse/kernels/gemm.hpp"
#include "diffuse/kernels/softmax.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/group_norm.hpp"

namespace diffuse::nn {

/// Self-attention block with a residual, y = (x + proj(attention(GN(x)))) / sqrt(2), on
/// (N, H, W, C) with `Heads` heads and a GroupNorm of G groups (EDM's UNetBlock attention).
template <class T, std::size_t H, std::size_t W, std::size_t C, std::size_t Heads, std::size_t G>
struct Attention {
  static_assert(Heads > 0 && C % Heads == 0,
                "diffuse::nn::Attention: channels must be divisible by the number of heads");
  static constexpr std::size_t P = H * W;     ///< positions
  static constexpr std::size_t D = C / Heads;  ///< channels per head
  using Act = Shape<dyn, H, W, C>;  ///< (N, H, W, C): input and output
  using Norm = GroupNorm<T, H, W, C, G>;  ///< The GroupNorm before the projections.
  using Qkv = Conv1x1<T, C, 3 * C, H, W>;  ///< q, k, v projection (C -> 3C).
  using Proj = Conv1x1<T, C, C, H, W>;  ///< Output projection (C -> C).
  /// Number of parameters.
  static constexpr std::size_t param_count = Norm::param_count + Qkv::param_count + Proj::param_count;
  /// Saved per image for backward: GroupNorm statistics, hn, qkv_out, attn and a.
  static constexpr std::size_t activations_per_image =
      Norm::activations_per_image + P * C + P * 3 * C + Heads * P * P + P * C;
  /// Scratch per image that backward needs (ws argument).
  // g, da, dA, dqkv, dhn, GroupNorm scratch
  static constexpr std::size_t workspace_per_image = P * C * 2 + Heads * P * P + 3 * P * C + P * C +
                                                     Norm::workspace_per_image;

  Norm norm;  ///< PyTorch name "norm"
  Qkv qkv;  ///< PyTorch name "qkv"
  Proj proj;  ///< PyTorch name "proj"
  Tensor<T, Act> hn;                           ///< (N,H,W,C) GN(x)
  Tensor<T, Shape<dyn, H, W, 3 * C>> qkv_out;  ///< (N,H,W,3C)
  Tensor<T, Shape<dyn, Heads, P, P>> attn;     ///< (N,Heads,P,P) softmax rows
  Tensor<T, Act> a;                            ///< (N,H,W,C) attention output before proj

  /// PyTorch's default initialisation of norm, qkv and proj.
  void init(Generator& g) {
    norm.init();
    qkv.init(g);
    proj.init(g);
  }

  /// y = (x + proj(attention(GN(x)))) / sqrt(2). y must not alias x.
  void forward(TensorView<const T, Act> x /*(N,H,W,C)*/, TensorView<T, Act> y /*(N,H,W,C)*/) {
    const std::size_t n = x.batch();
    check_batch(n, y.batch(), "Attention::forward");
    hn.resize(n);
    qkv_out.resize(n);
    attn.resize(n);
    a.resize(n);
    norm.forward(x, hn);
    qkv.forward(hn, qkv_out);
    using kernels::index_t;
    const T scale = T(1) / std::sqrt(T(D));
    const T* base = qkv_out.data();
    const index_t N = index_t(n), ld3 = index_t(3 * C), s3 = index_t(P * 3 * C), sA = index_t(Heads * P * P);
    for (std::size_t h = 0; h < Heads; ++h) {
      const T* q = base + h * D;
      const T* k = base + C + h * D;
      kernels::gemm_batched<T>(false, true, index_t(P), index_t(P), index_t(D), scale, q, ld3, s3, k, ld3, s3, T(0),
                               attn.data() + h * P * P, index_t(P), sA, N);
    }
    kernels::softmax_rows<T>(attn.data(), attn.data(), index_t(n * Heads * P), index_t(P), index_t(P));
    for (std::size_t h = 0; h < Heads; ++h) {
      const T* v = base + 2 * C + h * D;
      kernels::gemm_batched<T>(false, false, index_t(P), index_t(D), index_t(P), T(1), attn.data() + h * P * P,
                               index_t(P), sA, v, ld3, s3, T(0), a.data() + h * D, index_t(C), index_t(P * C), N);
    }
    proj.forward(a, y);
    y = (x + y) * T(1 / std::sqrt(2.0));
  }

  /// dx = beta * dx + dL/dx; parameter grads +=. x: the input of forward.
  /// ws: N * workspace_per_image elements.
  void backward(TensorView<const T, Act> x, TensorView<const T, Act> dy, TensorView<T, Act> dx, T beta, T* ws) {
    const std::size_t n = x.batch();
    check_batch(n, dy.batch(), "Attention::backward");
    check_batch(n, dx.batch(), "Attention::backward");
    T* p = ws;
    auto take = [&](std::size_t per_image) {
      T* r = p;
      p += n * per_image;
      return r;
    };
    TensorView<T, Act> g(take(P * C), n), da(take(P * C), n), dhn(take(P * C), n);
    T* dA = take(Heads * P * P);
    TensorView<T, Shape<dyn, H, W, 3 * C>> dqkv(take(3 * P * C), n);
    T* gn_ws = take(Norm::workspace_per_image);

    g = dy * T(1 / std::sqrt(2.0));
    store_or_add(dx, g, beta);  // the residual
    proj.backward(a, g, da);
    using kernels::index_t;
    const T scale = T(1) / std::sqrt(T(D));
    const T* base = qkv_out.data();
    T* dbase = dqkv.data();
    const index_t N = index_t(n), ld3 = index_t(3 * C), s3 = index_t(P * 3 * C), sA = index_t(Heads * P * P),
                  sC = index_t(P * C);
    for (std::size_t h = 0; h < Heads; ++h) {
      const T* v = base + 2 * C + h * D;
      const T* A = attn.data() + h * P * P;
      const T* dah = da.data() + h * D;
      // dA = da v^T,  dv = A^T da
      kernels::gemm_batched<T>(false, true, index_t(P), index_t(P), index_t(D), T(1), dah, index_t(C), sC, v, ld3,
                               s3, T(0), dA + h * P * P, index_t(P), sA, N);
      kernels::gemm_batched<T>(true, false, index_t(P), index_t(D), index_t(P), T(1), A, index_t(P), sA, dah,
                               index_t(C), sC, T(0), dbase + 2 * C + h * D, ld3, s3, N);
    }
    // dA -> dS (pre-softmax scores), in place
    kernels::softmax_rows_backward<T>(attn.data(), dA, dA, index_t(n * Heads * P), index_t(P), index_t(P));
    for (std::size_t h = 0; h < Heads; ++h) {
      const T* q = base + h * D;
      const T* k = base + C + h * D;
      const T* dSh = dA + h * P * P;
      // dq = scale dS k,  dk = scale dS^T q
      kernels::gemm_batched<T>(false, false, index_t(P), index_t(D), index_t(P), scale, dSh, index_t(P), sA, k,
                               ld3, s3, T(0), dbase + h * D, ld3, s3, N);
      kernels::gemm_batched<T>(true, false, index_t(P), index_t(D), index_t(P), scale, dSh, index_t(P), sA, q,
                               ld3, s3, T(0), dbase + C + h * D, ld3, s3, N);
    }
    qkv.backward(hn, dqkv, dhn);
    norm.backward(x, dhn, dx, T(1), gn_ws);
  }

  /// Calls f(ParamRef) for norm, qkv and proj, in state_dict order.
  template <class F>
  void visit_params(F& f, ParamName& name) {
    detail::visit_child(f, name, "norm", norm);
    detail::visit_child(f, name, "qkv", qkv);
    detail::visit_child(f, name, "proj", proj);
  }
  /// f(name, value, grad) for every parameter, in state_dict order.
  template <class F>
  void for_each_param(F&& f) { for_each_param_of(*this, f); }
};

}  // namespace diffuse::nn
