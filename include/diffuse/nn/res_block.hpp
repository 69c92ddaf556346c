// ResBlock: the DDPM++ / EDM residual block with adaptive (scale, shift) modulation from
// the noise embedding, optionally followed by self-attention:
//
//   h   = Conv3x3(SiLU(GN(x)))                                   (Cin -> Cout)
//   (scale, shift) = split(Linear(E -> 2 Cout)(e))                scale first
//   h   = SiLU(GN(h) * (1 + scale) + shift)
//   h   = Conv3x3(h)                                             (Cout -> Cout)
//   out = (h + skip(x)) / sqrt(2),  skip = Conv1x1 if Cin != Cout, else identity
//   out = Attention(out) when Heads > 0
//
// PyTorch names (in state_dict order): norm0, conv0, affine, norm1, conv1, skip, attn.
// Keeps the first conv's output, (scale, shift), the GroupNorm statistics and (with
// attention) the pre-attention output. The two normalised activations, SiLU(GN(x)) and
// SiLU(GN(h) (1 + scale) + shift), live in scratch during forward and are recomputed in
// backward (one cheap GroupNorm pass each) rather than kept: they are a third of the
// network's activation memory. forward and backward take scratch areas (`ws`).
#pragma once

#include <type_traits>

#include "diffuse/nn/attention.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/group_norm.hpp"
#include "diffuse/nn/linear.hpp"

namespace diffuse::nn {

namespace detail {
struct NoLayer {
  static constexpr std::size_t param_count = 0;
  static constexpr std::size_t activations_per_image = 0;
  static constexpr std::size_t workspace_per_image = 0;
};
}  // namespace detail

/// x: (N, H, W, Cin), e: (N, E) -> (N, H, W, Cout). Gin/Gout: GroupNorm groups of the
/// input and output channels; Heads: 0 for no attention.
template <class T, std::size_t H, std::size_t W, std::size_t Cin, std::size_t Cout, std::size_t E,
          std::size_t Gin, std::size_t Gout, std::size_t Heads = 0>
struct ResBlock {
  using In = Shape<dyn, H, W, Cin>;  ///< (N, H, W, Cin)
  using Out = Shape<dyn, H, W, Cout>;  ///< (N, H, W, Cout)
  using EmbShape = Shape<dyn, E>;  ///< (N, E): the noise embedding
  using Mod = Shape<dyn, 2 * Cout>;  ///< (N, 2 Cout): scale | shift
  static constexpr bool has_skip_conv = Cin != Cout;  ///< The skip path is a Conv1x1 (Cin != Cout), else identity.
  static constexpr bool has_attention = Heads > 0;  ///< Followed by self-attention (Heads > 0).

  using Norm0 = GroupNormSiLU<T, H, W, Cin, Gin>;  ///< SiLU(GN(x)) on the input.
  using Conv0 = Conv3x3<T, Cin, Cout, H, W>;  ///< First 3x3 convolution (Cin -> Cout).
  using Affine = Linear<T, E, 2 * Cout>;  ///< Linear(E -> 2 Cout): e -> (scale | shift).
  using Norm1 = AdaGroupNormSiLU<T, H, W, Cout, Gout>;  ///< SiLU(GN(h) * (1 + scale) + shift).
  using Conv1 = Conv3x3<T, Cout, Cout, H, W>;  ///< Second 3x3 convolution (Cout -> Cout).
  /// Conv1x1 skip when Cin != Cout, else an empty placeholder.
  using Skip = std::conditional_t<has_skip_conv, Conv1x1<T, Cin, Cout, H, W>, detail::NoLayer>;
  /// Attention when Heads > 0, else an empty placeholder.
  using Attn = std::conditional_t<has_attention, Attention<T, H, W, Cout, (Heads > 0 ? Heads : 1), Gout>,
                                  detail::NoLayer>;

  static constexpr std::size_t HW = H * W;  ///< Pixels per image.
  /// Number of parameters.
  static constexpr std::size_t param_count = Norm0::param_count + Conv0::param_count + Affine::param_count +
                                             Norm1::param_count + Conv1::param_count + Skip::param_count +
                                             Attn::param_count;
  /// Saved for backward, per image (not counting the output, which the caller owns).
  static constexpr std::size_t activations_per_image =
      Norm0::activations_per_image + HW * Cout + 2 * Cout + Norm1::activations_per_image +
      (has_attention ? HW * Cout + Attn::activations_per_image : 0);
  static constexpr std::size_t max_c = Cin > Cout ? Cin : Cout;  ///< The larger channel count.
  /// Scratch per image that forward needs (the normalised activations, one at a time).
  static constexpr std::size_t forward_workspace_per_image = HW * max_c;
  /// Backward scratch per image of the block itself: g, da1, da0, dss and the GroupNorm
  /// scratch (which also holds the recomputed activations).
  static constexpr std::size_t own_workspace = HW * Cout + HW * Cout + HW * Cin + 2 * Cout + HW * max_c;
  /// Scratch per image that backward needs (ws argument): [dr (attention only)] then the
  /// larger of the attention's scratch and own_workspace.
  static constexpr std::size_t workspace_per_image =
      (has_attention ? HW * Cout : 0) +
      (Attn::workspace_per_image > own_workspace ? Attn::workspace_per_image : own_workspace);

  Norm0 norm0;  ///< PyTorch name "norm0"
  Conv0 conv0;  ///< PyTorch name "conv0"
  Affine affine;  ///< PyTorch name "affine"
  Norm1 norm1;  ///< PyTorch name "norm1"
  Conv1 conv1;  ///< PyTorch name "conv1"
  [[no_unique_address]] Skip skip;  ///< PyTorch name "skip" (only when has_skip_conv)
  [[no_unique_address]] Attn attn;  ///< PyTorch name "attn" (only when has_attention)

  Tensor<T, Out> h1;   ///< (N,H,W,Cout) conv0 output
  Tensor<T, Mod> ss;   ///< (N,2Cout)    scale | shift
  Tensor<T, Out> r;    ///< (N,H,W,Cout) block output before attention (attention only)

  /// PyTorch default initialisation, in state_dict order.
  void init(Generator& g) {
    norm0.init();
    conv0.init(g);
    affine.init(g);
    norm1.init();
    conv1.init(g);
    if constexpr (has_skip_conv) skip.init(g);
    if constexpr (has_attention) attn.init(g);
  }

  /// y = block(x, e). y must not alias x. ws: N * forward_workspace_per_image elements.
  void forward(TensorView<const T, In> x /*(N,H,W,Cin)*/, TensorView<const T, EmbShape> e /*(N,E)*/,
               TensorView<T, Out> y /*(N,H,W,Cout)*/, T* ws) {
    const std::size_t n = x.batch();
    check_batch(n, e.batch(), "ResBlock::forward");
    check_batch(n, y.batch(), "ResBlock::forward");
    h1.resize(n);
    ss.resize(n);
    if constexpr (has_attention) r.resize(n);
    TensorView<T, In> a0(ws, n);   // SiLU(GN(x))
    TensorView<T, Out> a1(ws, n);  // SiLU(GN(h1) (1 + scale) + shift), after a0 is used
    norm0.forward(x, a0);
    conv0.forward(a0, h1);
    affine.forward(e, ss);
    norm1.forward(h1, ss, a1);
    TensorView<T, Out> res = has_attention ? r.view() : y;
    if constexpr (has_skip_conv) skip.forward(x, res);
    else res = x;
    conv1.forward(a1, res, T(1));
    res *= T(1 / std::sqrt(2.0));
    if constexpr (has_attention) attn.forward(r, y);
  }

  /// dx = beta * dx + dL/dx, de += dL/de, parameter grads +=. x, e: the inputs of
  /// forward. ws: N * workspace_per_image elements.
  void backward(TensorView<const T, In> x, TensorView<const T, EmbShape> e, TensorView<const T, Out> dy,
                TensorView<T, In> dx, T beta, TensorView<T, EmbShape> de, T* ws) {
    const std::size_t n = x.batch();
    check_batch(n, dy.batch(), "ResBlock::backward");
    check_batch(n, dx.batch(), "ResBlock::backward");
    check_batch(n, de.batch(), "ResBlock::backward");
    T* p = ws;
    auto take = [&](std::size_t per_image) {
      T* q = p;
      p += n * per_image;
      return q;
    };
    const T* dres_data = dy.data();  // dL/d(pre-attention output)
    if constexpr (has_attention) {
      TensorView<T, Out> dr(take(HW * Cout), n);
      attn.backward(r, dy, dr, T(0), p);  // attention's scratch overlaps ours (used before it)
      dres_data = dr.data();
    }
    TensorView<const T, Out> dres(dres_data, n);
    TensorView<T, Out> g(take(HW * Cout), n), da1(take(HW * Cout), n);
    TensorView<T, In> da0(take(HW * Cin), n);
    TensorView<T, Mod> dss(take(2 * Cout), n);
    T* gn_ws = take(HW * max_c);
    // The recomputed activations, one at a time, in GroupNorm's scratch (each is dead
    // before the next GroupNorm backward needs that scratch).
    TensorView<T, Out> a1(gn_ws, n);
    TensorView<T, In> a0(gn_ws, n);

    g = dres * T(1 / std::sqrt(2.0));
    norm1.forward(h1, ss, a1);  // same statistics as in forward
    conv1.backward(a1, g, da1);
    if constexpr (has_skip_conv) skip.backward(x, g, dx, beta);
    else store_or_add(dx, g, beta);
    norm1.backward(h1, ss, da1, da1, T(0), dss, gn_ws);  // da1 becomes dL/dh1 (in place)
    affine.backward(e, dss, de, T(1));
    norm0.forward(x, a0);
    conv0.backward(a0, da1, da0);
    norm0.backward(x, da0, dx, T(1), gn_ws);
  }

  /// Calls f(ParamRef) for every parameter, in state_dict order.
  template <class F>
  void visit_params(F& f, ParamName& name) {
    detail::visit_child(f, name, "norm0", norm0);
    detail::visit_child(f, name, "conv0", conv0);
    detail::visit_child(f, name, "affine", affine);
    detail::visit_child(f, name, "norm1", norm1);
    detail::visit_child(f, name, "conv1", conv1);
    if constexpr (has_skip_conv) detail::visit_child(f, name, "skip", skip);
    if constexpr (has_attention) detail::visit_child(f, name, "attn", attn);
  }
  /// f(name, value, grad) for every parameter, in state_dict order.
  template <class F>
  void for_each_param(F&& f) { for_each_param_of(*this, f); }
  /// Sets every parameter gradient to zero.
  void zero_grad() { zero_grad_of(*this); }
};

}  // namespace diffuse::nn
