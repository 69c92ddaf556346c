// expect: diffuse: per-channel vector length differs from the channel (last) extent
#include <diffuse/tensor.hpp>
int main() {
  diffuse::Tensor<float, diffuse::Shape<diffuse::dyn, 14, 14, 64>> h(2);
  diffuse::Tensor<float, diffuse::Shape<32>> bias;
  h = h + diffuse::per_channel(bias);
}
