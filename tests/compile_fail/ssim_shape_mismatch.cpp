// expect: diffuse::metrics::ssim: the two images differ in shape
#include <diffuse/metrics/ssim.hpp>
int main() {
  diffuse::Tensor<float, diffuse::Shape<28, 28, 1>> a;
  diffuse::Tensor<float, diffuse::Shape<28, 28, 3>> b;
  return diffuse::metrics::ssim(a.view(), b.view()) > 0;
}
