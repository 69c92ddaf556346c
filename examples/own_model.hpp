// The configuration of own_model_train.cpp and own_model_sample.cpp: colour images of
// 48 x 48 pixels, four levels (48, 24, 12, 6), attention at 12 x 12.
#pragma once

#include <diffuse/nn/unet_config.hpp>

inline constexpr diffuse::nn::UNetConfig my_net{
    .image_channels = 3,
    .image_size = 48,
    .channels = 16,
    .channel_mult = {1, 2, 2, 4, 0, 0, 0, 0},
    .blocks = 1,
    .attn_resolutions = {12, 0, 0, 0, 0, 0, 0, 0},
};
