// expect: diffuse::nn::UNet: dropout is not implemented (it must be 0)
#include <diffuse/unet.hpp>
inline constexpr diffuse::nn::UNetConfig config{.dropout = 0.1};
int main() { diffuse::nn::UNet<config> net; }
