// expect: diffuse::Shape: only the leading (batch) extent may be dyn
#include <diffuse/tensor.hpp>
int main() {
  diffuse::Tensor<float, diffuse::Shape<4, diffuse::dyn>> x;
  (void)x;
}
