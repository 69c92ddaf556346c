// expect: diffuse::nn::UNet: a GroupNorm's channel count is not divisible by its number of groups
// 3 groups cannot split 8 channels.
#include <diffuse/unet.hpp>
inline constexpr diffuse::nn::UNetConfig config{.channels = 8, .groups = 3};
int main() { diffuse::nn::UNet<config> net; }
