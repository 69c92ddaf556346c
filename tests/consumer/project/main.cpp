// Uses the installed headers: tensors, a fused expression, a reduction, the RNG.
#include <cmath>
#include <cstdio>

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
  std::printf("consumer ok: diffuse %s, %s, sum %.4f\n", version, instruction_set().c_str(), got);
  return 0;
}
