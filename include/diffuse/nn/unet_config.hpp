// The configuration of a UNet as a compile-time value, the two reference configurations
// of docs/benchmark-model.md, and the plan (the list of stages) derived from it.
//
// UNetConfig is a structural type: it is passed as a template argument,
// `nn::UNet<nn::edm_tiny>`, so every layer's channel count and resolution, and so every
// activation shape, is known to the compiler. Impossible configurations are rejected by
// the static_asserts of check_config() with a message saying what is wrong.
#pragma once

#include <array>
#include <cstddef>

namespace diffuse::nn {

/// What a UNet looks like. Lists (channel_mult, attn_resolutions) end at their first 0.
struct UNetConfig {
  std::size_t image_channels = 1;  ///< channels of the image (1 for MNIST, 3 for RGB)
  std::size_t image_size = 28;     ///< height = width of the image
  std::size_t channels = 32;       ///< base channel count C
  std::array<std::size_t, 8> channel_mult{1, 2, 2, 0, 0, 0, 0, 0};  ///< per level: C * mult
  std::size_t blocks = 2;          ///< ResBlocks per level in the encoder (decoder: blocks + 1)
  std::array<std::size_t, 8> attn_resolutions{7, 0, 0, 0, 0, 0, 0, 0};  ///< resolutions with attention
  bool mid_attention = true;       ///< attention between the two middle ResBlocks
  std::size_t heads = 1;           ///< attention heads
  std::size_t emb_mult = 4;        ///< noise embedding E = emb_mult * C
  /// Classes of a class-conditional network (0: unconditional). Its label embedding is
  /// added to the noise embedding; label -1 means "no label" (classifier-free guidance).
  std::size_t classes = 0;
  /// GroupNorm groups of a layer with `ch` channels: `groups` if non-zero, otherwise
  /// min(max_groups, ch / group_width).
  std::size_t groups = 0;
  std::size_t max_groups = 32;  ///< most groups when `groups` is 0
  std::size_t group_width = 4;  ///< channels per group when `groups` is 0
  /// Dropout probability inside the ResBlocks. Only 0 is implemented (the reference
  /// models use none); any other value is rejected at compile time.
  double dropout = 0.0;
};

/// The headline benchmark model `edm-mnist-small` (1x28x28, C = 32, mult (1, 2, 2)).
inline constexpr UNetConfig edm_mnist_small{};

/// The test model `edm-tiny`: C = 8, mult (1, 2), one ResBlock per level (two in the
/// decoder), attention at 14x14 and in the middle, 2 groups everywhere.
inline constexpr UNetConfig edm_tiny{
    .image_channels = 1,
    .image_size = 28,
    .channels = 8,
    .channel_mult = {1, 2, 0, 0, 0, 0, 0, 0},
    .blocks = 1,
    .attn_resolutions = {14, 0, 0, 0, 0, 0, 0, 0},
    .groups = 2,
};

/// `edm-cifar-small`, for 3 x 32 x 32 colour images: the layout of EDM's DDPM++ CIFAR-10
/// network (Karras et al. 2022, Table 7: attention at 16 x 16, three levels 32/16/8) at a
/// size that trains on a few cores: C = 32 (EDM: 128), mult (1, 2, 2) (EDM: (2, 2, 2)),
/// two ResBlocks per level (EDM: 4). docs/programs.md gives its parameters and speed.
inline constexpr UNetConfig edm_cifar_small{
    .image_channels = 3,
    .image_size = 32,
    .channels = 32,
    .channel_mult = {1, 2, 2, 0, 0, 0, 0, 0},
    .blocks = 2,
    .attn_resolutions = {16, 0, 0, 0, 0, 0, 0, 0},
};

/// `edm-64-small`, for 3 x 64 x 64 colour images: EDM's 64 x 64 layout (four levels
/// 64/32/16/8, attention at 16 x 16) with C = 32 (EDM: 128) and two ResBlocks per level
/// (EDM: 4).
inline constexpr UNetConfig edm_64_small{
    .image_channels = 3,
    .image_size = 64,
    .channels = 32,
    .channel_mult = {1, 2, 2, 2, 0, 0, 0, 0},
    .blocks = 2,
    .attn_resolutions = {16, 0, 0, 0, 0, 0, 0, 0},
};

/// The same configuration with `classes` classes (0: unconditional), e.g.
/// `UNet<with_classes(edm_mnist_small, 10)>`.
constexpr UNetConfig with_classes(UNetConfig c, std::size_t classes) {
  c.classes = classes;
  return c;
}

/// The same configuration without classes: the body of the network (every stage but the
/// embedding) does not depend on them, so conditional and unconditional variants share
/// its types (and the compiler builds them once).
constexpr UNetConfig without_classes(const UNetConfig& c) { return with_classes(c, 0); }

/// Number of levels of a configuration (entries of channel_mult before the first 0).
constexpr std::size_t levels_of(const UNetConfig& c) {
  std::size_t n = 0;
  while (n < c.channel_mult.size() && c.channel_mult[n] != 0) ++n;
  return n;
}

/// GroupNorm groups for `ch` channels under configuration c.
constexpr std::size_t groups_for(const UNetConfig& c, std::size_t ch) {
  if (c.groups) return c.groups;
  const std::size_t g = c.group_width ? ch / c.group_width : 0;
  return g < c.max_groups ? g : c.max_groups;
}

/// Kinds of stages of the UNet body.
enum class StageKind { conv_in, res, down, up };

/// One stage of the body: what it is, its channels and resolution, the skip it keeps
/// (encoder) or consumes (decoder).
struct StageDesc {
  StageKind kind{};  ///< what the stage is
  ///@{
  /// Input and output channels, and the input resolution (H = W). A decoder ResBlock's
  /// input channels cin do not count the skip (skip_channels).
  std::size_t cin = 0, cout = 0, res = 0;
  ///@}
  std::size_t skip_channels = 0;           ///< decoder ResBlocks: channels of the consumed skip
  std::size_t skip_from = 0;               ///< decoder ResBlocks: index of the stage giving the skip
  bool consumes_skip = false;  ///< decoder ResBlocks: the input is concat(h, skip)
  bool is_skip = false;                    ///< encoder: the output is kept as a skip
  bool attention = false;  ///< ResBlocks: followed by self-attention
  std::size_t module = 0;                  ///< index in its PyTorch ModuleList (enc, mid or dec)
  int part = 0;                            ///< 0 enc, 1 mid, 2 dec
};

namespace detail {

constexpr bool has_attention_at(const UNetConfig& c, std::size_t res) {
  for (std::size_t r : c.attn_resolutions)
    if (r == res && r != 0) return true;
  return false;
}

template <class F>
constexpr void walk_stages(const UNetConfig& c, F&& emit) {
  const std::size_t levels = levels_of(c);
  std::array<std::size_t, 64> skip_stage{}, skip_ch{};
  std::size_t skips = 0, index = 0, enc = 0, mid = 0, dec = 0;
  std::size_t res = c.image_size, ch = c.channels;
  auto push = [&](StageDesc s) {
    emit(s);
    if (s.is_skip && skips < skip_stage.size()) {
      skip_stage[skips] = index;
      skip_ch[skips] = s.cout;
      ++skips;
    }
    ++index;
  };
  push({StageKind::conv_in, c.image_channels, ch, res, 0, 0, false, true, false, enc++, 0});
  for (std::size_t l = 0; l < levels; ++l) {
    const std::size_t out = c.channels * c.channel_mult[l];
    for (std::size_t b = 0; b < c.blocks; ++b) {
      push({StageKind::res, ch, out, res, 0, 0, false, true, has_attention_at(c, res), enc++, 0});
      ch = out;
    }
    if (l + 1 < levels) {
      push({StageKind::down, ch, ch, res, 0, 0, false, true, false, enc++, 0});
      res = (res + 1) / 2;
    }
  }
  push({StageKind::res, ch, ch, res, 0, 0, false, false, c.mid_attention, mid++, 1});
  push({StageKind::res, ch, ch, res, 0, 0, false, false, false, mid++, 1});
  for (std::size_t l = levels; l-- > 0;) {
    const std::size_t out = c.channels * c.channel_mult[l];
    for (std::size_t b = 0; b < c.blocks + 1; ++b) {
      std::size_t from = 0, sc = 0;
      if (skips > 0) {
        --skips;
        from = skip_stage[skips];
        sc = skip_ch[skips];
      }
      push({StageKind::res, ch, out, res, sc, from, true, false, has_attention_at(c, res), dec++, 2});
      ch = out;
    }
    if (l > 0) {
      push({StageKind::up, ch, ch, res, 0, 0, false, false, false, dec++, 2});
      res *= 2;
    }
  }
}

}  // namespace detail

/// Number of stages of the body (conv_in, encoder, middle, decoder).
constexpr std::size_t stage_count(const UNetConfig& c) {
  std::size_t n = 0;
  detail::walk_stages(c, [&](const StageDesc&) { ++n; });
  return n;
}

/// The stages of the body, in execution order.
template <UNetConfig Cfg>
inline constexpr auto unet_plan = [] {
  std::array<StageDesc, stage_count(Cfg)> s{};
  std::size_t i = 0;
  detail::walk_stages(Cfg, [&](const StageDesc& d) { s[i++] = d; });
  return s;
}();

// ---- validity checks (each names what is wrong) --------------------------------------

/// channel_mult lists at least one level.
constexpr bool config_levels_ok(const UNetConfig& c) { return levels_of(c) >= 1; }

/// The image size is even at every level that is downsampled, and at least 2 at the lowest.
constexpr bool config_sizes_halvable(const UNetConfig& c) {
  std::size_t res = c.image_size;
  for (std::size_t l = 0; l + 1 < levels_of(c); ++l) {
    if (res % 2 != 0 || res < 2) return false;
    res /= 2;
  }
  return res >= 2;
}

/// Every GroupNorm (ResBlock inputs with their skip channels, ResBlock outputs, the output
/// head) has a non-zero number of groups that divides its channels.
constexpr bool config_groups_ok(const UNetConfig& c) {
  bool ok = true;
  detail::walk_stages(c, [&](const StageDesc& s) {
    if (s.kind != StageKind::res) return;
    const std::size_t cin = s.cin + s.skip_channels;
    const std::size_t gi = groups_for(c, cin), go = groups_for(c, s.cout);
    if (gi == 0 || go == 0 || cin % gi != 0 || s.cout % go != 0) ok = false;
  });
  const std::size_t g = groups_for(c, c.channels);  // the output head
  if (g == 0 || c.channels % g != 0) ok = false;
  return ok;
}

/// heads is non-zero and divides the channels of every ResBlock with attention.
constexpr bool config_heads_ok(const UNetConfig& c) {
  bool ok = c.heads > 0;
  detail::walk_stages(c, [&](const StageDesc& s) {
    if (s.kind == StageKind::res && s.attention && s.cout % c.heads != 0) ok = false;
  });
  return ok;
}

/// Every non-zero entry of attn_resolutions is the resolution of some level.
constexpr bool config_attention_resolutions_exist(const UNetConfig& c) {
  for (std::size_t r : c.attn_resolutions) {
    if (r == 0) continue;
    bool found = false;
    std::size_t res = c.image_size;
    for (std::size_t l = 0; l < levels_of(c); ++l) {
      if (res == r) found = true;
      res = (res + 1) / 2;
    }
    if (!found) return false;
  }
  return true;
}

/// Compile-time validation of a configuration; instantiate with the config.
template <UNetConfig Cfg>
struct check_config {
  static_assert(Cfg.image_channels > 0 && Cfg.channels > 0 && Cfg.image_size > 0,
                "diffuse::nn::UNet: image_channels, image_size and channels must be positive");
  static_assert(config_levels_ok(Cfg), "diffuse::nn::UNet: channel_mult must list at least one level");
  static_assert(Cfg.channels % 2 == 0,
                "diffuse::nn::UNet: channels must be even (the sinusoidal noise embedding has cos and sin halves)");
  static_assert(config_sizes_halvable(Cfg),
                "diffuse::nn::UNet: image_size cannot be halved at every level (each downsampled level needs an even size)");
  static_assert(config_groups_ok(Cfg),
                "diffuse::nn::UNet: a GroupNorm's channel count is not divisible by its number of groups");
  static_assert(config_heads_ok(Cfg),
                "diffuse::nn::UNet: channels at an attention resolution are not divisible by the number of heads");
  static_assert(config_attention_resolutions_exist(Cfg),
                "diffuse::nn::UNet: attn_resolutions names a resolution the UNet does not have");
  static_assert(Cfg.dropout == 0.0, "diffuse::nn::UNet: dropout is not implemented (it must be 0)");
  static_assert(Cfg.emb_mult > 0, "diffuse::nn::UNet: emb_mult must be positive");
  static constexpr bool value = true;  ///< True once the static_asserts have passed.
};

}  // namespace diffuse::nn
