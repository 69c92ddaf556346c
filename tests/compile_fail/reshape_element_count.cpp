// expect: diffuse: reshape changes the number of elements
#include <diffuse/tensor.hpp>
int main() {
  diffuse::Tensor<float, diffuse::Shape<diffuse::dyn, 7, 7, 64>> h(4);
  auto flat = h.reshape<diffuse::Shape<diffuse::dyn, 49, 32>>();
  (void)flat;
}
