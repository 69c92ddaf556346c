// expect: success
// The reference configurations and a four-level RGB one are accepted.
#include <diffuse/unet.hpp>
inline constexpr diffuse::nn::UNetConfig rgb{
    .image_channels = 3, .image_size = 32, .channels = 16, .channel_mult = {1, 2, 2, 2}, .attn_resolutions = {8}};
static_assert(diffuse::nn::UNet<diffuse::nn::edm_mnist_small>::param_count == 1742881);
static_assert(diffuse::nn::UNet<diffuse::nn::edm_tiny>::param_count == 48401);
static_assert(diffuse::nn::UNet<rgb>::param_count > 0);
int main() {}
