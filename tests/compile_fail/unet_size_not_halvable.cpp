// expect: diffuse::nn::UNet: image_size cannot be halved at every level
// A fourth level would need 7x7 halved.
#include <diffuse/unet.hpp>
inline constexpr diffuse::nn::UNetConfig config{.image_size = 28, .channel_mult = {1, 2, 2, 2}};
int main() { diffuse::nn::UNet<config> net; }
