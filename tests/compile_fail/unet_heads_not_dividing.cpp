// expect: diffuse::nn::UNet: channels at an attention resolution are not divisible by the number of heads
#include <diffuse/unet.hpp>
inline constexpr diffuse::nn::UNetConfig config{.heads = 3};
int main() { diffuse::nn::UNet<config> net; }
