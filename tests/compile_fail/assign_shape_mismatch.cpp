// expect: diffuse: operand shapes differ
#include <diffuse/tensor.hpp>
int main() {
  diffuse::Tensor<float, diffuse::Shape<diffuse::dyn, 28, 28, 32>> h(4);
  diffuse::Tensor<float, diffuse::Shape<diffuse::dyn, 28, 28, 64>> g(4);
  h = silu(g);
}
