// expect: success
#include <diffuse/tensor.hpp>
int main() {
  diffuse::Tensor<float, diffuse::Shape<diffuse::dyn, 4, 4, 3>> x(2), y(2);
  diffuse::Tensor<float, diffuse::Shape<3>> b;
  y = silu(2.f * x + per_channel(b));
  return static_cast<int>(diffuse::sum(y.reshape<diffuse::Shape<diffuse::dyn, 48>>()));
}
