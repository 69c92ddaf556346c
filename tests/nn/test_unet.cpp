// Tests of UNet<Config>: the structure and parameter count of the reference models
// (against the PyTorch twin in tests/fixtures/make_fixtures.py), a finite-difference
// gradient check of the whole edm-tiny network in double, float/double agreement,
// per-image independence across batch sizes, another configuration (3x32x32, four
// levels, two heads), and a training step that allocates nothing after the first.
#include <gtest/gtest.h>

#include <dlfcn.h>

#include <atomic>
#include <cstring>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

#include <diffuse/io/safetensors.hpp>
#include <diffuse/kernels/precision.hpp>
#include <diffuse/optim/adamw.hpp>
#include <diffuse/optim/ema.hpp>

#include "gradcheck.hpp"
#include "support/threads.hpp"

// ---- allocation counting ------------------------------------------------------------
// While counting is on, every malloc-family call (the library's tensors and scratch use
// aligned_alloc; operator new ends in malloc) is counted, attributed by its caller:
// calls from inside the OpenMP runtime (libgomp allocates a team descriptor for each
// parallel region that runs serialised, see the report in docs/unet.md) are counted
// apart. glibc's __libc_* entry points do the real work. Under ASan, which owns malloc,
// only operator new is counted.
namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};          // by the library and the test
std::atomic<long> g_runtime_allocations{0};  // by libgomp
bool from_openmp_runtime(void* caller) {
  Dl_info info;
  return dladdr(caller, &info) && info.dli_fname && std::strstr(info.dli_fname, "libgomp");
}
inline void note_allocation(void* caller) {
  if (!g_counting.load(std::memory_order_relaxed)) return;
  if (caller && from_openmp_runtime(caller)) g_runtime_allocations.fetch_add(1, std::memory_order_relaxed);
  else g_allocations.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

#if !defined(__SANITIZE_ADDRESS__) && defined(__GLIBC__)
#define DIFFUSE_TEST_COUNTS_MALLOC 1
#define NOTE_ALLOCATION() note_allocation(__builtin_return_address(0))
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void* malloc(std::size_t n) {
  NOTE_ALLOCATION();
  return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t s) {
  NOTE_ALLOCATION();
  return __libc_calloc(n, s);
}
void* realloc(void* p, std::size_t n) {
  NOTE_ALLOCATION();
  return __libc_realloc(p, n);
}
void* aligned_alloc(std::size_t a, std::size_t n) {
  NOTE_ALLOCATION();
  return __libc_memalign(a, n);
}
void* memalign(std::size_t a, std::size_t n) {
  NOTE_ALLOCATION();
  return __libc_memalign(a, n);
}
int posix_memalign(void** out, std::size_t a, std::size_t n) {
  NOTE_ALLOCATION();
  void* p = __libc_memalign(a, n);
  if (!p) return 12;  // ENOMEM
  *out = p;
  return 0;
}
}
#else
#define DIFFUSE_TEST_COUNTS_MALLOC 0
// These operator new call malloc, so free is the matching release (GCC cannot see that).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  note_allocation(nullptr);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#endif

namespace {

using namespace diffuse;
using namespace diffuse::nn_test;

using Tiny = nn::UNet<nn::edm_tiny, double>;
using TinyF = nn::UNet<nn::edm_tiny, float>;
using MnistSmall = nn::UNet<nn::edm_mnist_small, float>;

// Parameter counts of the PyTorch twins (tests/fixtures/make_fixtures.py prints them).
static_assert(MnistSmall::param_count == 1742881);
static_assert(Tiny::param_count == 48401);

/// A 3x32x32 model with four levels, attention at 8x8 with two heads.
inline constexpr nn::UNetConfig rgb32{
    .image_channels = 3,
    .image_size = 32,
    .channels = 16,
    .channel_mult = {1, 2, 2, 2, 0, 0, 0, 0},
    .blocks = 1,
    .attn_resolutions = {8, 0, 0, 0, 0, 0, 0, 0},
    .heads = 2,
};

TEST(NnUNet, ReferenceModelStructure) {
  constexpr auto plan = MnistSmall::plan;
  std::size_t enc = 0, mid = 0, dec_res = 0, up = 0, down = 0, attention = 0;
  for (const auto& s : plan) {
    if (s.part == 0) ++enc;
    if (s.part == 1) ++mid;
    if (s.part == 2 && s.kind == nn::StageKind::res) ++dec_res;
    if (s.kind == nn::StageKind::up) ++up;
    if (s.kind == nn::StageKind::down) ++down;
    if (s.attention) {
      ++attention;
      EXPECT_EQ(s.res, 7u);
    }
  }
  EXPECT_EQ(enc, 9u);  // conv, 2 RB, down, 2 RB, down, 2 RB(+attn): 9 skips
  EXPECT_EQ(mid, 2u);
  EXPECT_EQ(dec_res, 9u);
  EXPECT_EQ(up, 2u);
  EXPECT_EQ(down, 2u);
  EXPECT_EQ(attention, 2u + 1u + 3u);  // encoder level 2, middle, decoder level 2
  // Channels: 32 at 28, 64 at 14 and 7; the first decoder block sees 64 + 64.
  EXPECT_EQ(plan[11].cin + plan[11].skip_channels, 128u);
  EXPECT_EQ(plan.back().cout, 32u);
  EXPECT_EQ(plan.back().res, 28u);
  // GroupNorm groups: min(32, ch / 4); edm-tiny: 2.
  EXPECT_EQ(nn::groups_for(nn::edm_mnist_small, 96), 24u);
  EXPECT_EQ(nn::groups_for(nn::edm_mnist_small, 256), 32u);
  EXPECT_EQ(nn::groups_for(nn::edm_tiny, 24), 2u);
}

TEST(NnUNet, ParameterCountAndNames) {
  auto net = std::make_unique<Tiny>(1);
  EXPECT_EQ(nn::count_params(*net), Tiny::param_count);
  std::vector<std::string> names;
  net->for_each_param([&](std::string_view n, std::span<double> v, std::span<double> g) {
    EXPECT_EQ(v.size(), g.size());
    EXPECT_NE(v.data(), g.data());
    names.emplace_back(n);
  });
  ASSERT_EQ(names.size(), 128u);
  EXPECT_EQ(names.front(), "map_layer0.weight");
  EXPECT_EQ(names[4], "enc.0.weight");
  EXPECT_EQ(names[16], "enc.2.conv.weight");
  EXPECT_EQ(names[30], "enc.3.attn.norm.weight");
  EXPECT_EQ(names.back(), "out_conv.bias");
  auto big = std::make_unique<MnistSmall>(1);
  EXPECT_EQ(nn::count_params(*big), MnistSmall::param_count);
}

// Sanitizer and unoptimised builds run the kernels ~100x slower: they check fewer elements.
#if defined(__SANITIZE_ADDRESS__) || !defined(__OPTIMIZE__)
constexpr bool slow_build = true;
#else
constexpr bool slow_build = false;
#endif

// L = sum(F(x, c_noise) * w) for the gradient checks.
struct TinyProblem {
  std::size_t n;
  std::unique_ptr<Tiny> net = std::make_unique<Tiny>(7);
  Tensor<double, Tiny::Batch> x{n}, out{n}, w{n}, dx{n};
  std::vector<double> c_noise;
  explicit TinyProblem(std::size_t batch = 2) : n(batch) {
    const double sigmas[] = {0.3, 12.0};
    for (std::size_t i = 0; i < n; ++i) c_noise.push_back(std::log(sigmas[i % 2]) / 4);
    randn(x, 40);
    randn(w, 41);
    // Non-default GroupNorm parameters so that their gradients are exercised fully.
    Generator g(42);
    net->for_each_param([&](std::string_view name, std::span<double> v, std::span<double>) {
      if (name.find("norm") == std::string_view::npos) return;
      Tensor<double, Shape<dyn>> t(v.size());
      fill_normal(t, g, 0.0, 0.3);
      for (std::size_t i = 0; i < v.size(); ++i) v[i] += t(i);
    });
  }
  double run(bool bwd) {
    net->forward(x, c_noise, out);
    if (bwd) net->backward(w, dx);
    return dot(out, w);
  }
};

// Runs f with one OpenMP thread (the finite differences repeat ~500 small forwards, which
// are slower with two threads on a busy machine; threading is covered by the other tests).
template <class F>
void single_threaded(F&& f) {
#if defined(_OPENMP)
  const int before = omp_get_max_threads();
  omp_set_num_threads(1);
  f();
  omp_set_num_threads(before);
#else
  f();
#endif
}

TEST(NnUNet, TinyGradientCheck) { single_threaded([] {
  TinyProblem p(slow_build ? 1 : 2);
  p.net->zero_grad();
  p.run(true);
  std::vector<std::string> names;
  std::vector<std::vector<double>> grads;
  std::vector<std::span<double>> values;
  p.net->for_each_param([&](std::string_view name, std::span<double> v, std::span<double> g) {
    names.emplace_back(name);
    grads.emplace_back(g.begin(), g.end());
    values.push_back(v);
  });
  const std::vector<double> gx(p.dx.begin(), p.dx.end());
  // A few elements of every parameter tensor (of every eighth in slow builds), and of the input.
  for (std::size_t k = 0; k < names.size(); k += slow_build ? 8 : 1)
    expect_gradient("edm-tiny " + names[k], values[k], grads[k], [&] { return p.run(false); }, slow_build ? 1 : 2,
                    1e-5, 1e-5);
  expect_gradient("edm-tiny dx", span_of(p.x), gx, [&] { return p.run(false); }, slow_build ? 4 : 12, 1e-5, 1e-5);
}); }

TEST(NnUNet, FloatAgreesWithDouble) {
  TinyProblem p;
  p.net->zero_grad();
  p.run(true);
  auto f = std::make_unique<TinyF>(0);
  std::vector<std::span<double>> dv, dg;
  p.net->for_each_param([&](std::string_view, std::span<double> v, std::span<double> g) {
    dv.push_back(v);
    dg.push_back(g);
  });
  std::size_t k = 0;
  f->for_each_param([&](std::string_view, std::span<float> v, std::span<float>) {
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = float(dv[k][i]);
    ++k;
  });
  Tensor<float, TinyF::Batch> x(p.n), out(p.n), w(p.n), dx(p.n);
  for (std::size_t i = 0; i < x.size(); ++i) {
    x.data()[i] = float(p.x.data()[i]);
    w.data()[i] = float(p.w.data()[i]);
  }
  std::vector<float> c(p.c_noise.begin(), p.c_noise.end());
  f->zero_grad();
  f->forward(x, c, out);
  f->backward(w, dx);
  double err = 0, ref = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    err = std::max(err, std::abs(double(out.data()[i]) - p.out.data()[i]));
    ref = std::max(ref, std::abs(p.out.data()[i]));
  }
  EXPECT_LT(err, 1e-4 * ref);
  k = 0;
  f->for_each_param([&](std::string_view name, std::span<float>, std::span<float> g) {
    double e = 0, r = 0;
    for (std::size_t i = 0; i < g.size(); ++i) {
      e = std::max(e, std::abs(double(g[i]) - dg[k][i]));
      r = std::max(r, std::abs(dg[k][i]));
    }
    EXPECT_LE(e, 1e-3 * r + 1e-6) << name;
    ++k;
  });
}

TEST(NnUNet, ImagesAreIndependentOfBatchSize) {
  auto net = std::make_unique<TinyF>(3);
  Tensor<float, TinyF::Batch> x3(3), out3(3), x2(2), out2(2);
  randn(x3, 50);
  for (std::size_t i = 0; i < x2.size(); ++i) x2.data()[i] = x3.data()[i];
  std::vector<float> c = {-0.5f, 0.1f, 0.9f};
  net->forward(x3, c, out3);
  net->forward(x2, std::span<const float>(c.data(), 2), out2);
  for (std::size_t i = 0; i < out2.size(); ++i) ASSERT_NEAR(out2.data()[i], out3.data()[i], 1e-5);
}

// Backward after the batch size changed (the gradient buffers are placed again, the scratch
// stays at the larger size) gives the same bits as a network that only saw the new size.
TEST(NnUNet, BackwardAfterABatchSizeChange) {
  auto run = [](TinyF& net, std::size_t n, std::uint64_t seed, std::vector<float>& r) {
    Tensor<float, TinyF::Batch> x(n), out(n), dout(n), dx(n);
    Generator g(seed);
    fill_normal(x, g);
    fill_normal(dout, g);
    std::vector<float> c(n);
    for (std::size_t i = 0; i < n; ++i) c[i] = -1.f + 0.4f * float(i);
    net.zero_grad();
    net.forward(x, c, out);
    net.backward(dout, dx);
    r.assign(out.begin(), out.end());
    r.insert(r.end(), dx.begin(), dx.end());
    net.for_each_param([&](std::string_view, std::span<float>, std::span<float> grad) {
      r.insert(r.end(), grad.begin(), grad.end());
    });
  };
  auto changed = std::make_unique<TinyF>(3), fresh = std::make_unique<TinyF>(3);
  std::vector<float> first, got, want;
  run(*changed, 3, 9, first);
  run(*changed, 2, 8, got);
  run(*fresh, 2, 8, want);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
}

// Every reduction has an order fixed by the sizes (the convolution weight gradients sum
// their pixels in ranges that do not depend on the threads), so a forward and backward
// give the same bits on one thread and on two.
TEST(NnUNet, SameBitsForAnyThreadCount) {
  std::vector<float> result[2];
  for (int threads : {1, 2}) {
    diffuse::testing::with_threads(threads, [&] {
      auto net = std::make_unique<TinyF>(3);
      Tensor<float, TinyF::Batch> x(6), out(6), dout(6), dx(6);
      Generator g(8);
      fill_normal(x, g);
      fill_normal(dout, g);
      const std::vector<float> c = {-1.f, -0.5f, 0.f, 0.3f, 0.7f, 1.2f};
      net->zero_grad();
      net->forward(x, c, out);
      net->backward(dout, dx);
      auto& r = result[threads - 1];
      r.assign(out.begin(), out.end());
      r.insert(r.end(), dx.begin(), dx.end());
      net->for_each_param([&](std::string_view, std::span<float>, std::span<float> grad) {
        r.insert(r.end(), grad.begin(), grad.end());
      });
    });
  }
  ASSERT_EQ(result[0].size(), result[1].size());
  EXPECT_EQ(std::memcmp(result[0].data(), result[1].data(), result[0].size() * sizeof(float)), 0);
}

TEST(NnUNet, OtherConfiguration) {
  using Net = nn::UNet<rgb32, float>;
  static_assert(Net::stages == 1 + 4 + 3 + 2 + 8 + 3);
  auto net = std::make_unique<Net>(5);
  Tensor<float, Net::Batch> x(2), out(2), w(2), dx(2);
  randn(x, 60);
  randn(w, 61);
  std::vector<float> c = {0.2f, -0.3f};
  net->forward(x, c, out);
  net->backward(w, dx);
  EXPECT_TRUE(std::isfinite(sum(abs(out))));
  EXPECT_GT(sum(abs(dx)), 0.f);
  double gsum = 0;
  net->for_each_param([&](std::string_view, std::span<float>, std::span<float> g) {
    for (float v : g) gsum += std::abs(v);
  });
  EXPECT_TRUE(std::isfinite(gsum));
  EXPECT_GT(gsum, 0.0);
}

// UNet training steps (with AdamW, clipping and the EMA) with `threads` OpenMP threads (0: the default), counting
// the allocations of three steps after a first one on a fresh network.
void expect_training_steps_allocate_nothing(int threads) {
  SCOPED_TRACE("threads " + std::to_string(threads));
  const int saved = available_threads();
  if (threads > 0) set_num_threads(threads);
  // The headline model; edm-tiny in sanitizer builds (slow, and only operator new is
  // counted there, which the library never calls).
  using Net = std::conditional_t<DIFFUSE_TEST_COUNTS_MALLOC, MnistSmall, TinyF>;
  constexpr std::size_t n = 4;
  auto net = std::make_unique<Net>(11);
  Tensor<float, Net::Batch> x(n), target(n), out(n), dout(n);
  randn(x, 70);
  randn(target, 71);
  std::vector<float> c = {-1.f, -0.2f, 0.3f, 0.8f};
  optim::AdamWConfig config;
  config.max_grad_norm = 1.0;
  optim::AdamW opt(config);
  optim::Ema ema(*net);
  long counts[3] = {}, runtime[3] = {};
  for (int step = 0; step < 3; ++step) {
    g_allocations = 0;
    g_runtime_allocations = 0;
    g_counting = true;
    net->zero_grad();
    net->forward(x, c, out);
    dout = 2.f / float(n) * (out - target);  // d/d(out) of the mean squared error
    net->backward(dout);
    opt.step(*net);  // the gradient norm, clipping and the update
    ema.update(*net, 0.999);
    g_counting = false;
    counts[step] = g_allocations.load();
    runtime[step] = g_runtime_allocations.load();
  }
  if (DIFFUSE_TEST_COUNTS_MALLOC) {
    EXPECT_GT(counts[0], 0) << "the counter does not see the first step's allocations";
  }
  EXPECT_EQ(counts[1], 0);
  EXPECT_EQ(counts[2], 0);
  // Nor through OpenMP: the library never enters a parallel region it would run on one
  // thread (libgomp allocates for those), and a team, once made, is reused.
  EXPECT_EQ(runtime[1], 0);
  EXPECT_EQ(runtime[2], 0);
  if (!DIFFUSE_TEST_COUNTS_MALLOC) std::printf("(only operator new is counted in this build)\n");
  set_num_threads(saved);
  std::printf("allocations per step: %ld, %ld, %ld by the library; %ld, %ld, %ld by the OpenMP runtime\n", counts[0],
              counts[1], counts[2], runtime[0], runtime[1], runtime[2]);
}

TEST(NnUNet, TrainingStepAllocatesNothingAfterTheFirst) {
  expect_training_steps_allocate_nothing(0);
  // More threads than pieces of work in some kernels (and than cores): a smaller team
  // must not make libgomp end threads, whose scratch would then be allocated again.
  expect_training_steps_allocate_nothing(7);
}

// ---- PyTorch parity (fixtures from tests/fixtures/make_fixtures.py) ---------------------

// edm-tiny with PyTorch's weights, and PyTorch's inputs, outputs and gradients for them
// (NCHW files, NHWC tensors here).
struct TinyFixture {
  static constexpr std::size_t n = 3, H = 28, C = 1;
  std::unique_ptr<TinyF> net = std::make_unique<TinyF>(0);
  Tensor<float, TinyF::Batch> x{n}, dout{n}, want_out{n}, want_dx{n};
  std::vector<float> c_noise;
  float loss = 0;
  io::SafetensorsFile grads{std::string(DIFFUSE_FIXTURES_DIR) + "/edm_tiny_grads.safetensors"};

  TinyFixture() {
    const std::string dir = DIFFUSE_FIXTURES_DIR;
    nn::load_state_dict(*net, dir + "/edm_tiny_weights.safetensors");
    const io::SafetensorsFile io_file(dir + "/edm_tiny_io.safetensors");
    using kernels::index_t;
    auto to_nhwc = [&](const char* name, Tensor<float, TinyF::Batch>& t) {
      const auto v = io_file.read_vector(name, {n, C, H, H});
      nn::nchw_to_nhwc(v.data(), t.data(), index_t(n), index_t(C), index_t(H), index_t(H));
    };
    to_nhwc("x", x);
    to_nhwc("dout", dout);
    to_nhwc("out", want_out);
    to_nhwc("dx", want_dx);
    c_noise = io_file.read_vector("c_noise", {n});
    loss = io_file.read_vector("loss", {1})[0];
  }
  /// Largest error of each parameter gradient of `net` against PyTorch's, relative to its scale.
  template <class F>
  std::size_t for_each_grad_error(F&& f) const {
    std::size_t checked = 0;
    net->for_each_param_ref([&](const nn::ParamRef<float>& p) {
      std::vector<float> want(p.grad.size());
      nn::read_param(grads, p, std::span<float>(want));
      f(p.name, relative_error(p.grad, want));
      ++checked;
    });
    return checked;
  }
};

double relative_error_of(const Tensor<float, TinyF::Batch>& got, const Tensor<float, TinyF::Batch>& want) {
  return relative_error(std::span<const float>(got.data(), got.size()), {want.data(), want.size()});
}

TEST(NnUNet, MatchesPyTorch) {
  TinyFixture t;
  Tensor<float, TinyF::Batch> out(t.n), dx(t.n);
  t.net->zero_grad();
  t.net->forward(t.x, t.c_noise, out);
  EXPECT_LT(relative_error_of(out, t.want_out), 1e-4);
  EXPECT_NEAR(dot(out, t.dout), t.loss, 1e-4 * std::abs(t.loss));
  t.net->backward(t.dout, dx);
  EXPECT_LT(relative_error_of(dx, t.want_dx), 1e-3);
  const std::size_t checked = t.for_each_grad_error([](std::string_view name, double e) { EXPECT_LT(e, 1e-3) << name; });
  EXPECT_EQ(checked, t.grads.names().size());
}

// BF16 operands (kernels/precision.hpp) against PyTorch's FP32 on the same weights: the
// network's output and input gradient move by the operands' rounding (relative 2^-9 per
// operand) accumulated through the layers, and no more; the weight gradients likewise.
TEST(NnUNet, Bf16StaysCloseToFp32) {
  if (!kernels::bf16_available()) GTEST_SKIP() << kernels::bf16_unavailable_reason();
  TinyFixture t;
  Tensor<float, TinyF::Batch> out(t.n), dx(t.n);
  kernels::MatmulPrecisionScope bf16(kernels::MatmulPrecision::bf16);
  t.net->zero_grad();
  t.net->forward(t.x, t.c_noise, out);
  t.net->backward(t.dout, dx);
  const double e_out = relative_error_of(out, t.want_out), e_dx = relative_error_of(dx, t.want_dx);
  std::printf("relative error of BF16 against FP32: output %.2e, input gradient %.2e\n", e_out, e_dx);
  EXPECT_GT(e_out, 1e-5);  // the BF16 path ran (FP32 agrees to 1e-6 or better)
  EXPECT_LT(e_out, 2e-2);
  EXPECT_LT(e_dx, 4e-2);
  t.for_each_grad_error([](std::string_view name, double e) { EXPECT_LT(e, 4e-2) << name; });
}

// hash_uniform() and deterministic_params() of make_fixtures.py.
double hash_uniform(std::uint64_t i, std::uint64_t t) {
  constexpr std::uint64_t m = 0xFFFFFFFF;
  std::uint64_t h = (i * 2654435761u + t * 40503u + 12345u) & m;
  h ^= h >> 16;
  h = (h * 0x45D9F3Bu) & m;
  h ^= h >> 16;
  return double(h) / 2147483648.0 - 1.0;
}

template <class Net>
void set_deterministic_params(Net& net) {
  std::size_t t = 0;
  net.for_each_param_ref([&](const nn::ParamRef<float>& p) {
    const std::size_t numel = p.value.size();
    std::vector<float> v(numel);
    const bool norm_weight = p.name.find("norm") != std::string_view::npos && p.name.ends_with("weight");
    for (std::size_t i = 0; i < numel; ++i) {
      const double s = hash_uniform(i, t);
      if (p.torch_rank >= 2) v[i] = float(s / std::sqrt(double(numel / p.torch_shape[0])));
      else v[i] = float(norm_weight ? 1 + 0.1 * s : 0.1 * s);
    }
    if (p.layout == nn::ParamLayout::conv_hwio) {
      using kernels::index_t;
      nn::oihw_to_hwio(v.data(), p.value.data(), index_t(p.torch_shape[0]), index_t(p.torch_shape[1]),
                            index_t(p.torch_shape[2]));
    } else {
      std::copy(v.begin(), v.end(), p.value.begin());
    }
    ++t;
  });
}

TEST(NnUNet, MnistSmallMatchesPyTorch) {
  const io::SafetensorsFile f(std::string(DIFFUSE_FIXTURES_DIR) + "/edm_mnist_small_check.safetensors");
  auto net = std::make_unique<MnistSmall>(0);
  set_deterministic_params(*net);
  constexpr std::size_t n = 2;
  Tensor<float, MnistSmall::Batch> x(n), dout(n), out(n), dx(n);  // C = 1: NCHW and NHWC agree
  for (std::size_t i = 0; i < x.size(); ++i) {
    x.data()[i] = float(std::sin(0.37 * double(i)));
    dout.data()[i] = float(std::cos(0.11 * double(i)));
  }
  const std::vector<float> c_noise = {-1.2f, 0.5f};
  net->zero_grad();
  net->forward(x, c_noise, out);
  net->backward(dout, dx);
  const auto want_out = f.read_vector("out", {n, 1, 28, 28});
  const auto want_dx = f.read_vector("dx", {n, 1, 28, 28});
  EXPECT_LT(relative_error(std::span<const float>(out.data(), out.size()), want_out), 1e-4);
  EXPECT_LT(relative_error(std::span<const float>(dx.data(), dx.size()), want_dx), 1e-3);
  EXPECT_NEAR(dot(out, dout), f.read_vector("loss", {1})[0], 1e-4 * std::abs(f.read_vector("loss", {1})[0]));
  std::size_t checked = 0;
  net->for_each_param_ref([&](const nn::ParamRef<float>& p) {
    std::vector<float> g(p.grad.begin(), p.grad.end());  // PyTorch layout
    if (p.layout == nn::ParamLayout::conv_hwio) {
      using kernels::index_t;
      nn::hwio_to_oihw(p.grad.data(), g.data(), index_t(p.torch_shape[0]), index_t(p.torch_shape[1]),
                            index_t(p.torch_shape[2]));
    }
    const std::string name(p.name);
    const std::size_t k = std::min<std::size_t>(16, g.size());
    const auto head = f.read_vector("grad_head." + name, {k});
    const float norm = f.read_vector("grad_norm." + name, {1})[0];
    double sq = 0;
    for (float v : g) sq += double(v) * double(v);
    EXPECT_NEAR(std::sqrt(sq), norm, 1e-3 * norm + 1e-7) << name;
    for (std::size_t i = 0; i < k; ++i) EXPECT_NEAR(g[i], head[i], 1e-3 * norm + 1e-7) << name << "[" << i << "]";
    ++checked;
  });
  EXPECT_EQ(checked, f.names().size() / 2 - 1);  // out, dx, loss + 2 per parameter
}

TEST(NnUNet, SaveAndLoadParameters) {
  auto a = std::make_unique<TinyF>(21);
  auto b = std::make_unique<TinyF>(22);
  const std::string path = ::testing::TempDir() + "diffuse_tiny_params.safetensors";
  nn::save_state_dict(*a, path);
  nn::load_state_dict(*b, path);
  std::vector<float> va, vb;
  a->for_each_param([&](std::string_view, std::span<float> v, std::span<float>) { va.insert(va.end(), v.begin(), v.end()); });
  b->for_each_param([&](std::string_view, std::span<float> v, std::span<float>) { vb.insert(vb.end(), v.begin(), v.end()); });
  EXPECT_EQ(va, vb);
  // The file holds PyTorch layouts: the first conv weight is OIHW [8, 1, 3, 3].
  const io::SafetensorsFile f(path);
  EXPECT_EQ(f.info("enc.0.weight").shape, (std::vector<std::size_t>{8, 1, 3, 3}));
  std::remove(path.c_str());
}

TEST(NnUNet, MemoryFigures) {
  // Documented in docs/unet.md; a change here is a change there.
  EXPECT_EQ(MnistSmall::param_bytes, 2 * 1742881 * sizeof(float));
  EXPECT_GT(MnistSmall::activations_per_image, 0u);
  EXPECT_EQ(MnistSmall::training_bytes(128),
            MnistSmall::param_bytes + 128 * (MnistSmall::activations_per_image + MnistSmall::gradients_per_image) * 4);
  std::printf("edm-mnist-small: %zu parameters, %zu activation + %zu gradient floats per image, %.1f MB for a "
              "training step at batch 128\n",
              MnistSmall::param_count, MnistSmall::activations_per_image, MnistSmall::gradients_per_image,
              double(MnistSmall::training_bytes(128)) / 1e6);
  std::printf("edm-tiny: %zu parameters, %zu activation + %zu gradient floats per image\n", TinyF::param_count,
              TinyF::activations_per_image, TinyF::gradients_per_image);
}

}  // namespace
