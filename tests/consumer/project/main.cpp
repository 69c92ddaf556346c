// Uses the installed headers: tensors, a fused expression, a reduction, the RNG, and
// the io component (a PNG written and read back).
#include <cmath>
#include <cstdio>

#include <diffuse/io/image.hpp>
#include <diffuse/tensor.hpp>

int main() {
  using namespace diffuse;
  Tensor<float, Shape<dyn, 4, 4, 2>> x(3), y(3);
  Generator rng(1);
  fill_normal(x, rng);
  Tensor<float, Shape<2>> bias;
  bias(1) = 1.f;
  y = silu(x + per_channel(bias));
  const float expected = [&] {
    float s = 0.f;
    for (std::size_t i = 0; i < x.size(); ++i) {
      float v = x.data()[i] + (i % 2 ? 1.f : 0.f);
      s += v / (1.f + std::exp(-v));
    }
    return s;
  }();
  const float got = sum(y);
  if (std::abs(got - expected) > 1e-4f * std::abs(expected) + 1e-4f) {
    std::printf("consumer FAILED: %f != %f\n", got, expected);
    return 1;
  }
  const auto grid = io::image_grid(TensorView<const float, Shape<dyn, 4, 4, 2>>(y.view()), 3);
  Tensor<float, Shape<dyn, 8, 8, 1>> gray(1);
  fill_uniform(gray, rng, -1.0, 1.0);
  io::write_png("consumer.png", io::to_image8(TensorView<const float, Shape<8, 8, 1>>(gray.item(0))));
  const io::Image8 back = io::read_image("consumer.png");
  if (back.width != 8 || back.height != 8 || back.channels != 1 || grid.width != 3 * 4 + 2 * 2) {
    std::printf("consumer FAILED: image round trip\n");
    return 1;
  }
  std::printf("consumer ok: diffuse %s, %s, sum %.4f\n", version, instruction_set().c_str(), got);
  return 0;
}
