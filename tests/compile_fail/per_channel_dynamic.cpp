// expect: diffuse::per_channel: expects a tensor of shape Shape<C> (C static)
#include <diffuse/tensor.hpp>
int main() {
  diffuse::Tensor<float, diffuse::Shape<diffuse::dyn>> x(100), v(3);
  x = x + diffuse::per_channel(v);
}
