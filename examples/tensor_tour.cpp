// A tour of the tensor core: a batch of noisy images, the EDM noising step
// y = x + sigma * n written as one fused expression, per-channel and per-image
// statistics, and how fast the fused pass runs compared with memory speed.
#include <chrono>
#include <cstdio>
#include <cstring>

#include <diffuse/tensor.hpp>

using namespace diffuse;

int main() {
  constexpr std::size_t H = 28, W = 28, C = 32;
  using Images = Tensor<float, Shape<dyn, H, W, C>>;
  const std::size_t batch = 128;

  std::printf("diffuse %s, built for %s, %d OpenMP threads\n", version, instruction_set().c_str(),
              available_threads());

  // Images with a known per-channel mean, plus noise of a known level.
  Generator rng(2024);
  Images x(batch), noise(batch), y(batch);
  fill_uniform(x, rng, -1.0, 1.0);
  fill_normal(noise, rng);
  Tensor<float, Shape<C>> offset;
  for (std::size_t c = 0; c < C; ++c) offset(c) = 0.1f * static_cast<float>(c);
  const float sigma = 0.5f;
  y = x + per_channel(offset) + sigma * noise;

  auto channel_mean = mean<0, 1, 2>(y);
  std::printf("per-channel means (expected 0.1 * c): c=0 %.4f, c=1 %.4f, c=31 %.4f\n", channel_mean(0),
              channel_mean(1), channel_mean(31));
  Tensor<float, Shape<dyn, H, W, C>> residual(y - x - per_channel(offset));
  std::printf("noise level (expected %.2f): %.4f\n", sigma,
              std::sqrt(sum_squares(residual) / static_cast<float>(residual.size())));
  auto image_max = max<1, 2, 3>(y);
  std::printf("largest value of image 0: %.4f, of image %zu: %.4f\n", image_max(0), batch - 1,
              image_max(batch - 1));

  // The fused expression against a plain copy of the same amount of data.
  auto time_it = [](auto&& f) {
    double best = 1e9;
    for (int r = 0; r < 20; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      f();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
  };
  const double bytes = 2.0 * static_cast<double>(x.size() * sizeof(float));
  const double fused = time_it([&] { y = silu(1.5f * x + 0.25f); });
  const double copy = time_it([&] { std::memcpy(y.data(), x.data(), x.size() * sizeof(float)); });
  std::printf("y = silu(1.5 * x + 0.25) on %zu floats: %.1f GB/s (memcpy: %.1f GB/s)\n", x.size(),
              bytes / fused * 1e-9, bytes / copy * 1e-9);
  return 0;
}
