// expect: diffuse: operands have different element types
#include <diffuse/tensor.hpp>
int main() {
  diffuse::Tensor<float, diffuse::Shape<8>> a;
  diffuse::Tensor<double, diffuse::Shape<8>> b;
  diffuse::Tensor<float, diffuse::Shape<8>> c(a * b);
}
