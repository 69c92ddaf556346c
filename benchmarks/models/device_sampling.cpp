// Sampling edm-mnist-small on the GPU beside the CPU, in one process, rounds interleaved:
// the 16-image Heun-18 run (35 network evaluations), the denoiser D(x; sigma) at batch 1
// and 16, and where the GPU's time goes (kernel launches per evaluation, the cost of one
// launch, the largest convolution and a large GEMM alone). Also checks that both devices
// sample the same images from the same weights and noise. Prints medians and ranges.
//
//   build/offload/benchmarks/models/device_sampling [--rounds 5] [--checkpoint FILE]
//
// Needs a DIFFUSE_OFFLOAD build for the GPU rows; elsewhere it prints the CPU rows alone.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <diffuse/core/device.hpp>
#include <diffuse/diffusion/precond.hpp>
#include <diffuse/diffusion/sampler.hpp>
#include <diffuse/kernels/conv2d.hpp>
#include <diffuse/kernels/gemm.hpp>
#include <diffuse/train/checkpoint.hpp>
#include <diffuse/unet.hpp>

namespace {

using namespace diffuse;
using Net = nn::UNet<nn::edm_mnist_small>;
using Model = diffusion::EDMPrecond<Net>;
using Images = Tensor<float, Net::Batch>;
using Clock = std::chrono::steady_clock;

double seconds_of(const std::function<void()>& f) {
  const auto t0 = Clock::now();
  f();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Row {
  std::string name, unit;
  double scale;  // seconds -> unit
  std::vector<double> cpu, gpu;
};

void print(const Row& r) {
  auto stat = [&](std::vector<double> v) {
    if (v.empty()) return std::string("-");
    std::sort(v.begin(), v.end());
    char b[96];
    std::snprintf(b, sizeof b, "%.4g (%.4g-%.4g)", v[v.size() / 2] * r.scale, v.front() * r.scale,
                  v.back() * r.scale);
    return std::string(b);
  };
  std::string ratio = "-";
  if (!r.cpu.empty() && !r.gpu.empty()) {
    auto c = r.cpu, g = r.gpu;
    std::sort(c.begin(), c.end());
    std::sort(g.begin(), g.end());
    char b[32];
    std::snprintf(b, sizeof b, "%.2fx", c[c.size() / 2] / g[g.size() / 2]);
    ratio = b;
  }
  std::printf("| %s, %s | %s | %s | %s |\n", r.name.c_str(), r.unit.c_str(), stat(r.cpu).c_str(), stat(r.gpu).c_str(),
              ratio.c_str());
}

// One device's model and buffers, made while that device is selected.
struct Setup {
  std::unique_ptr<Model> model = std::make_unique<Model>();
  Images x16{16}, d16{16}, x1{1}, d1{1};
  explicit Setup(const std::string& checkpoint) {
    if (!checkpoint.empty()) train::load_sampling_weights(model->net(), checkpoint, "edm-mnist-small");
    Generator g(2);
    fill_normal(x16, g);
    fill_normal(x1, g);
    update_device(x16);
    update_device(x1);
  }
};

}  // namespace

int main(int argc, char** argv) {
  int rounds = 5;
  std::string checkpoint;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--checkpoint") && i + 1 < argc) checkpoint = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--rounds N] [--checkpoint FILE]\n", argv[0]);
      return 2;
    }
  }
  const bool gpu = gpu_unavailable_reason().empty();
  std::printf("CPU: %d OpenMP threads | GPU: %s\n", available_threads(),
              gpu ? (select_device("gpu"), device_description()).c_str() : gpu_unavailable_reason().c_str());
  select_device("cpu");

  std::unique_ptr<Setup> cpu_setup, gpu_setup;
  {
    DeviceScope d("cpu");
    cpu_setup = std::make_unique<Setup>(checkpoint);
  }
  if (gpu) {
    DeviceScope d("gpu");
    gpu_setup = std::make_unique<Setup>(checkpoint);
  }
  const diffusion::Heun<diffusion::KarrasSchedule> heun{.steps = 18};
  Row sample{"Heun-18, 16 images (35 evaluations)", "s", 1.0, {}, {}};
  Row den1{"D(x; sigma), batch 1", "ms", 1e3, {}, {}};
  Row den16{"D(x; sigma), batch 16", "ms", 1e3, {}, {}};
  Images first_cpu(16), first_gpu(16);
  std::uint64_t launches_per_eval = 0;
  detail::LaunchProfile profile16;  // one evaluation at batch 16 on the GPU
  for (int r = -1; r < rounds; ++r) {  // round -1 warms up (sizes every buffer, loads the GPU code)
    for (int dev = 0; dev < (gpu ? 2 : 1); ++dev) {
      DeviceScope d(dev ? "gpu" : "cpu");
      Setup& s = dev ? *gpu_setup : *cpu_setup;
      Row* rows[] = {&sample, &den1, &den16};
      auto keep = [&](Row* row, double t) {
        if (r >= 0) (dev ? row->gpu : row->cpu).push_back(t);
      };
      keep(rows[0], seconds_of([&] { heun.sample(*s.model, s.x16.view(), 7); }));
      if (r == -1) {
        Images& first = dev ? first_gpu : first_cpu;
        update_host(s.x16);
        std::copy(s.x16.data(), s.x16.data() + s.x16.size(), first.data());
      }
      auto launches = [] {
        std::uint64_t n = 0;
        for (auto& c : detail::launch_profile().launches) n += c.load();
        return n;
      };
      const auto before = launches();
      keep(rows[1], seconds_of([&] { (*s.model)(s.x1.view(), 1.0f, s.d1.view()); }));
      if (dev && r == -1) launches_per_eval = launches() - before;
      std::uint64_t n0[std::size_t(detail::LaunchKind::count)], t0[std::size_t(detail::LaunchKind::count)];
      for (std::size_t k = 0; k < std::size_t(detail::LaunchKind::count); ++k) {
        n0[k] = detail::launch_profile().launches[k].load();
        t0[k] = detail::launch_profile().nanoseconds[k].load();
      }
      keep(rows[2], seconds_of([&] { (*s.model)(s.x16.view(), 1.0f, s.d16.view()); }));
      if (dev && r == rounds - 1)
        for (std::size_t k = 0; k < std::size_t(detail::LaunchKind::count); ++k) {
          profile16.launches[k] = detail::launch_profile().launches[k].load() - n0[k];
          profile16.nanoseconds[k] = detail::launch_profile().nanoseconds[k].load() - t0[k];
        }
    }
  }
  std::printf("## edm-mnist-small sampling, %d rounds, CPU and GPU interleaved\n", rounds);
  std::printf("| row | CPU median (range) | GPU median (range) | CPU / GPU |\n|---|---|---|---|\n");
  print(sample);
  print(den1);
  print(den16);
  if (!gpu) return 0;

  double worst = 0, mean = 0;
  for (std::size_t i = 0; i < first_cpu.size(); ++i) {
    const double e = std::abs(double(first_cpu.data()[i]) - double(first_gpu.data()[i]));
    worst = std::max(worst, e);
    mean += e;
  }
  std::printf("same seed, both devices: mean |GPU - CPU| %.3g, largest %.3g (images span about [-1, 1])\n",
              mean / double(first_cpu.size()), worst);

  // Where the time goes on the GPU.
  DeviceScope d("gpu");
  std::printf("GPU kernel launches per evaluation of D: %llu\n", static_cast<unsigned long long>(launches_per_eval));
  std::printf("one evaluation of D at batch 16 on the GPU, by kernel:\n| kernel | launches | ms | us per launch |\n"
              "|---|---|---|---|\n");
  for (std::size_t k = 0; k < std::size_t(detail::LaunchKind::count); ++k) {
    const double n = double(profile16.launches[k].load()), ms = double(profile16.nanoseconds[k].load()) * 1e-6;
    if (n > 0) std::printf("| %s | %.0f | %.3f | %.1f |\n", detail::launch_kind_names[k], n, ms, ms * 1e3 / n);
  }
  Tensor<float, Shape<dyn>> one(1);
  std::vector<double> t;
  for (int i = 0; i < 2000; ++i) t.push_back(seconds_of([&] { one = one + 1.f; }));
  std::sort(t.begin(), t.end());
  std::printf("one element-wise launch on 1 element: median %.1f us (10%% %.1f, 90%% %.1f)\n", t[t.size() / 2] * 1e6,
              t[t.size() / 10] * 1e6, t[t.size() * 9 / 10] * 1e6);
  {
    const kernels::Conv2dShape c{16, 28, 28, 64, 64, 3, 1, 1};
    Tensor<float, Shape<dyn>> x(c.n * c.h * c.w * c.cin), w(9 * c.cin * c.cout), y(c.n * c.oh() * c.ow() * c.cout);
    std::vector<double> ct;
    for (int i = 0; i < 21; ++i)
      ct.push_back(seconds_of([&] { kernels::conv2d_forward<float>(c, x.data(), w.data(), nullptr, y.data()); }));
    std::sort(ct.begin(), ct.end());
    std::printf("conv 3x3, 16 x 28 x 28, 64 -> 64: median %.3f ms, %.0f GFLOP/s\n", ct[10] * 1e3,
                c.flops() / ct[10] / 1e9);
  }
  {
    const kernels::index_t n = 2048;
    Tensor<float, Shape<dyn>> a(n * n), b(n * n), c(n * n);
    std::vector<double> gt;
    for (int i = 0; i < 5; ++i)
      gt.push_back(seconds_of(
          [&] { kernels::gemm<float>(false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n); }));
    std::sort(gt.begin(), gt.end());
    std::printf("GEMM 2048^3: median %.2f ms, %.0f GFLOP/s\n", gt[2] * 1e3, 2.0 * n * n * n / gt[2] / 1e9);
  }
  return 0;
}
