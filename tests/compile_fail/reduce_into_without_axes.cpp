// expect: diffuse: a reduction into a tensor needs the axes to reduce
#include <diffuse/tensor.hpp>
int main() {
  diffuse::Tensor<float, diffuse::Shape<8>> a, b;
  diffuse::max(a, b);  // not an element-wise maximum: that is maximum(a, b)
}
