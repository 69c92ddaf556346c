// UNet<Cfg, T>: the DDPM++-style UNet of EDM as one type whose configuration Cfg (a
// UNetConfig value) is a template argument. Every stage is a distinct type with static
// shapes; the network owns every activation that backward needs and allocates them on
// the first forward for a batch size (and the gradient buffers on the first backward),
// then reuses them: a training step allocates nothing in steady state.
//
// Memory, planned once per batch size: forward's and backward's scratch are one buffer
// (never needed at the same time); a decoder block's concat(h, skip) and the decoder's
// upsampled images live in that scratch and are rebuilt in backward (one copy) instead of
// kept; the gradients of the stage outputs that are not skips (middle and decoder) take
// turns in two buffers, since each is dead once the stage below has used it.
//
//   image x (N,R,R,Cimg), c_noise (N), class labels (N; only if Cfg.classes > 0)
//   e   = NoiseEmbedding(c_noise, labels)                      (N, E), E = emb_mult * C
//   enc: conv_in, per level `blocks` ResBlocks (+ attention), Downsample between levels;
//        every encoder output is kept as a skip
//   mid: ResBlock + attention, ResBlock
//   dec: per level (lowest first) blocks + 1 ResBlocks on concat(h, last unused skip),
//        UpsampleConv between levels
//   out = Conv3x3(SiLU(GN(h)))                                 (N, R, R, Cimg)
//
// PyTorch state_dict names: [map_label.weight,] map_layer0.*, map_layer1.*, enc.<i>.*, mid.<i>.*, dec.<i>.*,
// out_norm.*, out_conv.* (tests/fixtures/make_fixtures.py builds the same module tree).
// Not here: the preconditioning (diffusion/precond.hpp), the loss, the optimiser.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <span>
#include <tuple>
#include <utility>

#include "diffuse/nn/concat.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/embedding.hpp"
#include "diffuse/nn/group_norm.hpp"
#include "diffuse/nn/res_block.hpp"
#include "diffuse/nn/unet_config.hpp"
#include "diffuse/nn/upsample.hpp"

namespace diffuse::nn {
namespace detail {

template <class T, UNetConfig Cfg, std::size_t I, StageKind K = unet_plan<Cfg>[I].kind>
struct UNetStage;

inline constexpr const char* stage_list_name[] = {"enc", "mid", "dec"};

// conv_in: Conv3x3(Cimg -> C) on the image.
template <class T, UNetConfig Cfg, std::size_t I>
struct UNetStage<T, Cfg, I, StageKind::conv_in> {
  static constexpr StageDesc d = unet_plan<Cfg>[I];
  using Layer = Conv3x3<T, d.cin, d.cout, d.res, d.res>;
  using In = typename Layer::In;
  using Out = typename Layer::Out;
  static constexpr std::size_t out_per_image = d.res * d.res * d.cout;
  static constexpr std::size_t activations_per_image = out_per_image;
  static constexpr std::size_t workspace_per_image = 0;
  static constexpr std::size_t forward_workspace_per_image = 0;
  Layer layer;
  Tensor<T, Out> out;
  T* grad = nullptr;  ///< dL/d(out): a slice of the UNet's gradient buffer
  TensorView<T, Out> dout() const { return {grad, out.batch()}; }
  void init(Generator& g) { layer.init(g); }
  void forward(TensorView<const T, In> x, T*) { layer.forward(x, out); }
  void backward(TensorView<const T, In> x, TensorView<T, In>* dx) {
    layer.backward_params(x, dout());
    if (dx) layer.backward_input(dout(), *dx);
  }
};

// Encoder or middle ResBlock (input = previous stage's output).
template <class T, UNetConfig Cfg, std::size_t I>
  requires(!unet_plan<Cfg>[I].consumes_skip)
struct UNetStage<T, Cfg, I, StageKind::res> {
  static constexpr StageDesc d = unet_plan<Cfg>[I];
  static constexpr std::size_t E = Cfg.emb_mult * Cfg.channels;
  using Layer = ResBlock<T, d.res, d.res, d.cin, d.cout, E, groups_for(Cfg, d.cin), groups_for(Cfg, d.cout),
                         d.attention ? Cfg.heads : 0>;
  using In = typename Layer::In;
  using Out = typename Layer::Out;
  static constexpr std::size_t out_per_image = d.res * d.res * d.cout;
  static constexpr std::size_t activations_per_image = out_per_image + Layer::activations_per_image;
  static constexpr std::size_t workspace_per_image = Layer::workspace_per_image;
  static constexpr std::size_t forward_workspace_per_image = Layer::forward_workspace_per_image;
  Layer layer;
  Tensor<T, Out> out;
  T* grad = nullptr;  ///< dL/d(out): a slice of the UNet's gradient buffer
  TensorView<T, Out> dout() const { return {grad, out.batch()}; }
  void init(Generator& g) { layer.init(g); }
  void forward(TensorView<const T, In> x, TensorView<const T, Shape<dyn, E>> e, T* ws) {
    layer.forward(x, e, out, ws);
  }
  void backward(TensorView<const T, In> x, TensorView<const T, Shape<dyn, E>> e, TensorView<T, In> dx, T beta,
                TensorView<T, Shape<dyn, E>> de, T* ws) {
    layer.backward(x, e, dout(), dx, beta, de, ws);
  }
};

// Decoder ResBlock on concat(previous output, skip).
template <class T, UNetConfig Cfg, std::size_t I>
  requires(unet_plan<Cfg>[I].consumes_skip)
struct UNetStage<T, Cfg, I, StageKind::res> {
  static constexpr StageDesc d = unet_plan<Cfg>[I];
  static constexpr std::size_t E = Cfg.emb_mult * Cfg.channels;
  static constexpr std::size_t R = d.res, Ch = d.cin, Cs = d.skip_channels, Ccat = Ch + Cs;
  using Layer = ResBlock<T, R, R, Ccat, d.cout, E, groups_for(Cfg, Ccat), groups_for(Cfg, d.cout),
                         d.attention ? Cfg.heads : 0>;
  using In = Shape<dyn, R, R, Ch>;
  using SkipIn = Shape<dyn, R, R, Cs>;
  using Cat = Shape<dyn, R, R, Ccat>;
  using Out = typename Layer::Out;
  static constexpr std::size_t out_per_image = R * R * d.cout;
  static constexpr std::size_t activations_per_image = out_per_image + Layer::activations_per_image;
  // Scratch: [concat(h, skip) | the block's forward scratch]; in backward
  // [dL/dconcat | concat(h, skip), rebuilt | the block's backward scratch].
  static constexpr std::size_t forward_workspace_per_image = R * R * Ccat + Layer::forward_workspace_per_image;
  static constexpr std::size_t workspace_per_image = 2 * R * R * Ccat + Layer::workspace_per_image;
  Layer layer;
  Tensor<T, Out> out;
  T* grad = nullptr;  ///< dL/d(out): a slice of the UNet's gradient buffer
  TensorView<T, Out> dout() const { return {grad, out.batch()}; }
  void init(Generator& g) { layer.init(g); }
  void forward(TensorView<const T, In> x, TensorView<const T, SkipIn> skip, TensorView<const T, Shape<dyn, E>> e,
               T* ws) {
    const std::size_t n = x.batch();
    TensorView<T, Cat> cat(ws, n);
    concat_channels<T, R, R, Ch, Cs>(x, skip, cat);
    layer.forward(cat, e, out, ws + n * R * R * Ccat);
  }
  void backward(TensorView<const T, In> x, TensorView<const T, SkipIn> skip, TensorView<T, In> dx, T beta_x,
                TensorView<T, SkipIn> dskip, T beta_skip, TensorView<const T, Shape<dyn, E>> e,
                TensorView<T, Shape<dyn, E>> de, T* ws) {
    const std::size_t n = x.batch();
    TensorView<T, Cat> dcat(ws, n), cat(ws + n * R * R * Ccat, n);
    concat_channels<T, R, R, Ch, Cs>(x, skip, cat);
    layer.backward(cat, e, dout(), dcat, T(0), de, ws + 2 * n * R * R * Ccat);
    concat_channels_backward<T, R, R, Ch, Cs>(dcat, dx, beta_x, dskip, beta_skip);
  }
};

template <class T, UNetConfig Cfg, std::size_t I>
struct UNetStage<T, Cfg, I, StageKind::down> {
  static constexpr StageDesc d = unet_plan<Cfg>[I];
  using Layer = Downsample<T, d.res, d.res, d.cin>;
  using In = typename Layer::In;
  using Out = typename Layer::Out;
  static constexpr std::size_t out_per_image = Out::item_size;
  static constexpr std::size_t activations_per_image = out_per_image;
  static constexpr std::size_t workspace_per_image = 0;
  static constexpr std::size_t forward_workspace_per_image = 0;
  Layer layer;
  Tensor<T, Out> out;
  T* grad = nullptr;  ///< dL/d(out): a slice of the UNet's gradient buffer
  TensorView<T, Out> dout() const { return {grad, out.batch()}; }
  void init(Generator& g) { layer.init(g); }
  void forward(TensorView<const T, In> x, T*) { layer.forward(x, out); }
  void backward(TensorView<const T, In> x, TensorView<T, In> dx, T beta) { layer.backward(x, dout(), dx, beta); }
};

template <class T, UNetConfig Cfg, std::size_t I>
struct UNetStage<T, Cfg, I, StageKind::up> {
  static constexpr StageDesc d = unet_plan<Cfg>[I];
  using Layer = UpsampleConv<T, d.res, d.res, d.cin>;
  using In = typename Layer::In;
  using Out = typename Layer::Out;
  static constexpr std::size_t out_per_image = Out::item_size;
  static constexpr std::size_t activations_per_image = out_per_image + Layer::activations_per_image;
  static constexpr std::size_t workspace_per_image = Layer::workspace_per_image;
  static constexpr std::size_t forward_workspace_per_image = Layer::forward_workspace_per_image;
  Layer layer;
  Tensor<T, Out> out;
  T* grad = nullptr;  ///< dL/d(out): a slice of the UNet's gradient buffer
  TensorView<T, Out> dout() const { return {grad, out.batch()}; }
  void init(Generator& g) { layer.init(g); }
  void forward(TensorView<const T, In> x, T* ws) { layer.forward(x, out, ws); }
  void backward(TensorView<const T, In> x, TensorView<T, In> dx, T beta, T* ws) {
    layer.backward(x, dout(), dx, beta, ws);
  }
};

template <class T, UNetConfig Cfg, class Seq>
struct UNetStages;
template <class T, UNetConfig Cfg, std::size_t... I>
struct UNetStages<T, Cfg, std::index_sequence<I...>> {
  using type = std::tuple<UNetStage<T, Cfg, I>...>;
  static constexpr std::size_t params = (UNetStage<T, Cfg, I>::Layer::param_count + ... + 0);
  static constexpr std::size_t activations = (UNetStage<T, Cfg, I>::activations_per_image + ... + 0);
  static constexpr std::array<std::size_t, sizeof...(I)> out_sizes{UNetStage<T, Cfg, I>::out_per_image...};
  static constexpr std::size_t workspace = std::max({std::size_t(0), UNetStage<T, Cfg, I>::workspace_per_image...});
  static constexpr std::size_t forward_workspace =
      std::max({std::size_t(0), UNetStage<T, Cfg, I>::forward_workspace_per_image...});
};

}  // namespace detail

/// The UNet F(x, c_noise) of configuration Cfg, element type T (float; double for
/// gradient checks).
template <UNetConfig Cfg, class T = float>
class UNet {
  static_assert(check_config<Cfg>::value);

 public:
  static constexpr UNetConfig config = Cfg;  ///< The configuration.
  static constexpr std::size_t R = Cfg.image_size;  ///< Image height and width.
  static constexpr std::size_t Cimg = Cfg.image_channels;  ///< Image channels.
  static constexpr std::size_t C = Cfg.channels;  ///< Base channel count.
  static constexpr std::size_t E = Cfg.emb_mult * Cfg.channels;  ///< Width of the noise embedding.
  /// Classes of a class-conditional network, 0 for an unconditional one.
  static constexpr std::size_t classes = Cfg.classes;
  static constexpr auto plan = unet_plan<without_classes(Cfg)>;  ///< The stages of the body (unet_plan).
  static constexpr std::size_t stages = plan.size();  ///< Number of stages of the body.

  /// A batch of images, NHWC.
  using Batch = Shape<dyn, R, R, Cimg>;
  /// One image, HWC.
  using Image = Shape<R, R, Cimg>;
  using value_type = T;  ///< The element type.

 private:
  using Stages = detail::UNetStages<T, without_classes(Cfg), std::make_index_sequence<stages>>;
  using Emb = NoiseEmbedding<T, C, E, Cfg.classes>;
  using Head = Shape<dyn, R, R, C>;
  using OutNorm = GroupNormSiLU<T, R, R, C, groups_for(Cfg, C)>;
  using OutConv = Conv3x3<T, C, Cimg, R, R>;
  /// Elements per image of backward's scratch (the largest any stage, the output head or
  /// the embedding needs).
  static constexpr std::size_t gradients_ws_per_image =
      std::max({Stages::workspace, R * R * C + OutNorm::workspace_per_image, Emb::workspace_per_image});
  /// Elements per image of the one scratch buffer forward and backward share.
  static constexpr std::size_t scratch_per_image = std::max(Stages::forward_workspace, gradients_ws_per_image);

  /// Where each stage's output gradient lives in the gradient buffer, per image (a batch
  /// of n uses n times each offset): skips (encoder outputs, read long after they are
  /// written) have their own slices; the other stages alternate between two slices at
  /// the front, the larger of them in size.
  struct GradLayout {
    std::array<std::size_t, stages> offset{};
    std::size_t total = 0;
  };
  static constexpr GradLayout grad_layout = [] {
    GradLayout g;
    std::size_t turn = 0;
    for (std::size_t i = 0; i < stages; ++i)
      if (!plan[i].is_skip) turn = std::max(turn, Stages::out_sizes[i]);
    g.total = 2 * turn;
    for (std::size_t i = 0; i < stages; ++i) {
      if (plan[i].is_skip) {
        g.offset[i] = g.total;
        g.total += Stages::out_sizes[i];
      } else {
        g.offset[i] = (i % 2) * turn;  // stage i + 1 writes it while reading its own
      }
    }
    return g;
  }();

 public:
  /// Number of parameters (equals the PyTorch model's).
  static constexpr std::size_t param_count =
      Emb::param_count + Stages::params + OutNorm::param_count + OutConv::param_count;
  /// Elements per image that forward allocates (inputs, activations and statistics kept
  /// for backward, and forward's scratch).
  static constexpr std::size_t activations_per_image =
      R * R * Cimg + 1 + Emb::activations_per_image + Stages::activations + R * R * C +
      OutNorm::activations_per_image + Stages::forward_workspace;
  /// Elements per image that the first backward adds: the activation-gradient buffers,
  /// and the growth of the scratch from forward's size to backward's.
  static constexpr std::size_t gradients_per_image =
      grad_layout.total + E + (scratch_per_image - Stages::forward_workspace);
  /// Bytes of parameters and their gradients.
  static constexpr std::size_t param_bytes = 2 * param_count * sizeof(T);
  /// Bytes a forward pass keeps for a batch of n images.
  static constexpr std::size_t forward_bytes(std::size_t n) { return n * activations_per_image * sizeof(T); }
  /// Bytes of everything a training step holds for a batch of n (parameters, gradients,
  /// activations, activation gradients, scratch), not counting the kernels' packing
  /// buffers and the optimiser's state.
  static constexpr std::size_t training_bytes(std::size_t n) {
    return param_bytes + n * (activations_per_image + gradients_per_image) * sizeof(T);
  }

  /// Parameters initialised like PyTorch's defaults from Generator(seed).
  explicit UNet(std::uint64_t seed = 0) {
    Generator g(seed);
    init(g);
  }

  /// (Re)initialises every parameter (PyTorch defaults, state_dict order).
  void init(Generator& g) {
    emb_.init(g);
    init_stages(g, std::make_index_sequence<stages>{});
    out_norm_.init();
    out_conv_.init(g);
  }

  /// out = F(x, c_noise); keeps what backward needs. out may not alias x.
  void forward(TensorView<const T, Batch> x /*(N,R,R,Cimg)*/, std::span<const T> c_noise /*[N]*/,
               TensorView<T, Batch> out /*(N,R,R,Cimg)*/) {
    forward(x, c_noise, {}, out);
  }
  /// out = F(x, c_noise, labels): labels holds one class per image, -1 for "no label"
  /// (the unconditional model of classifier-free guidance); empty means no labels at
  /// all. A label outside [-1, classes) throws std::invalid_argument.
  void forward(TensorView<const T, Batch> x /*(N,R,R,Cimg)*/, std::span<const T> c_noise /*[N]*/,
               std::span<const int> labels /*[N] or empty*/, TensorView<T, Batch> out /*(N,R,R,Cimg)*/) {
    const std::size_t n = x.batch();
    check_batch(n, c_noise.size(), "UNet::forward (c_noise)");
    check_batch(n, out.batch(), "UNet::forward");
    if (!labels.empty()) {
      check_batch(n, labels.size(), "UNet::forward (labels)");
      check_labels(labels, classes, "diffuse::nn::UNet::forward");
    }
    x_.resize(n);
    x_ = x;
    T* ws = scratch(n * Stages::forward_workspace);
    emb_.forward(c_noise, labels);
    forward_stages(ws, std::make_index_sequence<stages>{});
    auto& last = std::get<stages - 1>(stages_);
    head_.resize(n);
    out_norm_.forward(last.out, head_);
    out_conv_.forward(head_, out);
  }

  /// Accumulates all parameter gradients given dout = dL/d(out) of the last forward.
  void backward(TensorView<const T, Batch> dout /*(N,R,R,Cimg)*/) { run_backward(dout, nullptr); }
  /// As above, and dx = dL/dx (overwritten).
  void backward(TensorView<const T, Batch> dout, TensorView<T, Batch> dx) {
    check_batch(dout.batch(), dx.batch(), "UNet::backward");
    run_backward(dout, &dx);
  }

  /// f(std::string_view name, std::span<T> value, std::span<T> grad) for every
  /// parameter, in PyTorch state_dict order, with PyTorch's names.
  template <class F>
  void for_each_param(F&& f) { for_each_param_of(*this, f); }
  /// f(const ParamRef<T>&): as for_each_param, with PyTorch shapes and layouts (io).
  template <class F>
  void for_each_param_ref(F&& f) {
    ParamName name;
    visit_params(f, name);
  }
  /// Sets every parameter gradient to zero.
  void zero_grad() { zero_grad_of(*this); }

  /// Calls f(ParamRef) for every parameter under `name`, in state_dict order (the layer
  /// contract; for_each_param_ref starts it with an empty name).
  template <class F>
  void visit_params(F& f, ParamName& name) {
    ParamVisitor<T> v(f);  // one compiled walk over the layers serves every visitor
    emb_.visit_params(v, name);
    visit_stages(v, name, std::make_index_sequence<stages>{});
    detail::visit_child(v, name, "out_norm", out_norm_);
    detail::visit_child(v, name, "out_conv", out_conv_);
  }

  /// Stage I of the body (see unet_plan), for tests and inspection.
  template <std::size_t I>
  auto& stage() { return std::get<I>(stages_); }
  Emb& embedding() { return emb_; }  ///< The noise embedding (NoiseEmbedding), for tests and inspection.

 private:
  template <std::size_t... I>
  void init_stages(Generator& g, std::index_sequence<I...>) {
    (std::get<I>(stages_).init(g), ...);
  }

  template <std::size_t I>
  auto input_of() {
    if constexpr (I == 0) return TensorView<const T, Batch>(x_.view());
    else return TensorView<const T, typename std::tuple_element_t<I - 1, typename Stages::type>::Out>(
        std::get<I - 1>(stages_).out.view());
  }

  // The shared scratch, at least `elements` long (it only grows: a training step that
  // repeats the same batch allocates nothing).
  T* scratch(std::size_t elements) {
    if (scratch_.batch() < elements) scratch_.resize(elements);
    return scratch_.data();
  }

  template <std::size_t... I>
  void forward_stages(T* ws, std::index_sequence<I...>) {
    (forward_stage<I>(ws), ...);
  }
  template <std::size_t I>
  void forward_stage(T* ws) {
    auto& s = std::get<I>(stages_);
    const std::size_t n = x_.batch();
    s.out.resize(n);
    constexpr StageDesc d = plan[I];
    if constexpr (d.kind == StageKind::res) {
      if constexpr (d.consumes_skip)
        s.forward(input_of<I>(), std::get<d.skip_from>(stages_).out, emb_.out, ws);
      else
        s.forward(input_of<I>(), emb_.out, ws);
    } else {
      s.forward(input_of<I>(), ws);
    }
  }

  void run_backward(TensorView<const T, Batch> dout, TensorView<T, Batch>* dx) {
    const std::size_t n = x_.batch();
    check_batch(n, dout.batch(), "UNet::backward");
    T* ws = scratch(n * scratch_per_image);
    de_.resize(n);
    de_ = T(0);
    grads_.resize(n * grad_layout.total);
    place_grads(n, std::make_index_sequence<stages>{});
    // Output head.
    auto& last = std::get<stages - 1>(stages_);
    TensorView<T, Head> dhead(ws, n);
    out_conv_.backward(head_, dout, dhead);
    out_norm_.backward(last.out, dhead, last.dout(), T(0), ws + n * R * R * C);
    backward_stages(dx, ws, std::make_index_sequence<stages>{});
    emb_.backward(de_, ws);
  }

  template <std::size_t... I>
  void place_grads(std::size_t n, std::index_sequence<I...>) {
    ((std::get<I>(stages_).grad = grads_.data() + n * grad_layout.offset[I]), ...);
  }

  template <std::size_t... I>
  void backward_stages(TensorView<T, Batch>* dx, T* ws, std::index_sequence<I...>) {
    (backward_stage<stages - 1 - I>(dx, ws), ...);
  }

  // Gradient into stage I's input. An encoder output is also a skip: its consumer in
  // the decoder (a later stage, so processed earlier here) stores first, the next stage
  // then adds.
  template <std::size_t I>
  void backward_stage(TensorView<T, Batch>* dx, T* ws) {
    auto& s = std::get<I>(stages_);
    constexpr StageDesc d = plan[I];
    if constexpr (d.kind == StageKind::conv_in) {
      s.backward(input_of<I>(), dx);
    } else {
      auto& prev = std::get<I - 1>(stages_);
      constexpr T beta = plan[I - 1].is_skip ? T(1) : T(0);
      if constexpr (d.kind == StageKind::res) {
        if constexpr (d.consumes_skip)
          s.backward(input_of<I>(), std::get<d.skip_from>(stages_).out, prev.dout(), beta,
                     std::get<d.skip_from>(stages_).dout(), T(0), emb_.out, de_, ws);
        else
          s.backward(input_of<I>(), emb_.out, prev.dout(), beta, de_, ws);
      } else if constexpr (d.kind == StageKind::down) {
        s.backward(input_of<I>(), prev.dout(), beta);
      } else {
        s.backward(input_of<I>(), prev.dout(), beta, ws);
      }
    }
  }

  template <class F, std::size_t... I>
  void visit_stages(F& f, ParamName& name, std::index_sequence<I...>) {
    (visit_stage<I>(f, name), ...);
  }
  template <std::size_t I, class F>
  void visit_stage(F& f, ParamName& name) {
    constexpr StageDesc d = plan[I];
    const std::size_t a = name.push(detail::stage_list_name[d.part]);
    const std::size_t b = name.push(d.module);
    std::get<I>(stages_).layer.visit_params(f, name);
    name.pop(b);
    name.pop(a);
  }

  typename Stages::type stages_;
  Emb emb_;
  OutNorm out_norm_;
  OutConv out_conv_;
  Tensor<T, Batch> x_;   ///< (N,R,R,Cimg) copy of the input
  Tensor<T, Head> head_; ///< (N,R,R,C) SiLU(GN(last decoder output))
  Tensor<T, Shape<dyn, E>> de_;
  Tensor<T, Shape<dyn, 1>> scratch_;  ///< forward's and backward's scratch (grows to N * scratch_per_image)
  Tensor<T, Shape<dyn, 1>> grads_;    ///< the stage outputs' gradients (N * grad_layout.total), see GradLayout
};

}  // namespace diffuse::nn
