// expect: diffuse: a reduction lists the same axis twice
#include <diffuse/tensor.hpp>
int main() {
  diffuse::Tensor<float, diffuse::Shape<2, 4, 3>> x;
  auto m = diffuse::mean<1, 1>(x);
  (void)m;
}
