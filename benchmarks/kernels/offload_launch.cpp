// What an OpenMP offload kernel costs to start and how the loop's form changes its speed,
// with GCC's nvptx offloading: the measurements behind core/device.hpp's launch() and
// kernels/offload.hpp (figures in docs/performance.md). Plain OpenMP, no library code.
//
//   offload_launch          on the GPU (a DIFFUSE_OFFLOAD build; gpu_bundle.sh runs it)
//   offload_launch small    smaller GEMMs, for a run on the host fallback
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
int dev;

template <class F>
double median_seconds(F f, int reps) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    f();
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

#define FILL(name, directive)                                 \
  __attribute__((noinline)) void name(float* p, int n) {       \
    _Pragma(directive) for (int i = 0; i < n; ++i) p[i] = 1.f; \
  }
FILL(fill_teams_parallel, "omp target teams distribute parallel for simd is_device_ptr(p) device(dev)")
FILL(fill_teams, "omp target teams distribute simd is_device_ptr(p) device(dev)")
FILL(fill_teams64, "omp target teams distribute simd num_teams(64) is_device_ptr(p) device(dev)")
FILL(fill_parallel, "omp target parallel for simd is_device_ptr(p) device(dev)")
FILL(fill_simd, "omp target simd is_device_ptr(p) device(dev)")

// C = A B, n x n, one element per thread: the 64-bit collapsed form the first device
// kernels had, and the flat 32-bit form they have now.
__attribute__((noinline)) void gemm_collapse64(const float* a, const float* b, float* c, std::size_t n) {
#pragma omp target teams distribute parallel for simd collapse(2) is_device_ptr(a, b, c) device(dev)
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      float s = 0;
      for (std::size_t k = 0; k < n; ++k) s += a[i * n + k] * b[k * n + j];
      c[i * n + j] = s;
    }
}
__attribute__((noinline)) void gemm_flat32(const float* a, const float* b, float* c, int n) {
#pragma omp target teams distribute parallel for simd is_device_ptr(a, b, c) device(dev)
  for (int e = 0; e < n * n; ++e) {
    const int i = e / n, j = e % n;
    float s = 0;
    for (int k = 0; k < n; ++k) s += a[i * n + k] * b[k * n + j];
    c[e] = s;
  }
}
// A 4 x 4 block per thread, columns n/4 apart (neighbouring threads, neighbouring columns).
__attribute__((noinline)) void gemm_block4(const float* a, const float* b, float* c, int n) {
  const int q = n / 4;
#pragma omp target teams distribute parallel for simd is_device_ptr(a, b, c) device(dev)
  for (int e = 0; e < q * q; ++e) {
    const int i = (e / q) * 4, j = e % q;
    float s[4][4] = {};
    for (int k = 0; k < n; ++k) {
      float av[4], bv[4];
      for (int r = 0; r < 4; ++r) {
        av[r] = a[(i + r) * n + k];
        bv[r] = b[k * n + j + r * q];
      }
      for (int r = 0; r < 4; ++r)
        for (int t = 0; t < 4; ++t) s[r][t] += av[r] * bv[t];
    }
    for (int r = 0; r < 4; ++r)
      for (int t = 0; t < 4; ++t) c[(i + r) * n + j + t * q] = s[r][t];
  }
}

}  // namespace

int main(int argc, char**) {
  dev = omp_get_default_device();
  const int host = omp_get_initial_device();
  std::printf("OpenMP devices: %d (default %d)\n", omp_get_num_devices(), dev);
  float* buf = static_cast<float*>(omp_target_alloc(std::size_t{1} << 24, dev));
  std::printf("empty target region: %.1f us\n", 1e6 * median_seconds([] {
#pragma omp target device(dev)
    {}
  }, 100));
  struct Variant {
    const char* name;
    void (*f)(float*, int);
  } variants[] = {{"teams distribute parallel for simd", fill_teams_parallel},
                  {"teams distribute simd", fill_teams},
                  {"teams distribute simd num_teams(64)", fill_teams64},
                  {"parallel for simd", fill_parallel},
                  {"simd (one warp)", fill_simd}};
  std::printf("| writing n floats with `target ...` | n = 1 | n = 16K | n = 1M |\n|---|---|---|---|\n");
  for (const auto& v : variants) {
    double t[3];
    int k = 0;
    for (int n : {1, 1 << 14, 1 << 20}) t[k++] = median_seconds([&] { v.f(buf, n); }, 30);
    std::printf("| %s | %.1f us | %.1f us | %.1f us |\n", v.name, t[0] * 1e6, t[1] * 1e6, t[2] * 1e6);
  }
  const int n = argc > 1 ? 128 : 1024;
  std::vector<float> A(std::size_t(n) * n), B(A.size()), C(A.size());
  for (std::size_t i = 0; i < A.size(); ++i) A[i] = float(i % 7) * 0.1f, B[i] = float(i % 5) * 0.1f;
  const std::size_t bytes = A.size() * sizeof(float);
  auto* a = static_cast<float*>(omp_target_alloc(bytes, dev));
  auto* b = static_cast<float*>(omp_target_alloc(bytes, dev));
  auto* c = static_cast<float*>(omp_target_alloc(bytes, dev));
  omp_target_memcpy(a, A.data(), bytes, 0, 0, dev, host);
  omp_target_memcpy(b, B.data(), bytes, 0, 0, dev, host);
  auto report = [&](const char* name, double s) {
    omp_target_memcpy(C.data(), c, bytes, 0, 0, host, dev);
    double want = 0;
    for (int k = 0; k < n; ++k) want += double(A[3 * std::size_t(n) + k]) * B[std::size_t(k) * n + 5];
    std::printf("GEMM %d^3, %s: %.2f ms, %.0f GFLOP/s (C[3][5] %.4g, expected %.4g)\n", n, name, s * 1e3,
                2.0 * n * n * n / s / 1e9, C[3 * std::size_t(n) + 5], want);
  };
  report("collapse(2), 64-bit indices", median_seconds([&] { gemm_collapse64(a, b, c, std::size_t(n)); }, 3));
  report("one flat loop, 32-bit indices", median_seconds([&] { gemm_flat32(a, b, c, n); }, 3));
  report("4 x 4 block per thread", median_seconds([&] { gemm_block4(a, b, c, n); }, 3));
  return 0;
}
