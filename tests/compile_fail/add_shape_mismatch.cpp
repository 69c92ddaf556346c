// expect: diffuse: operand shapes differ
#include <diffuse/tensor.hpp>
int main() {
  diffuse::Tensor<float, diffuse::Shape<2, 3>> a;
  diffuse::Tensor<float, diffuse::Shape<3, 2>> b;
  diffuse::Tensor<float, diffuse::Shape<2, 3>> c(a + b);
}
