// Device selection everywhere; in builds with GPU code (DIFFUSE_OFFLOAD), the device
// bodies of the kernels (forward and backward), the expressions and a whole sampling run against the CPU: on
// the GPU when the OpenMP runtime finds one, else emulated on the host (OpenMP's host
// fallback), so that machines without a GPU still test the device code.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <diffuse/core/device.hpp>
#include <diffuse/core/random.hpp>
#include <diffuse/diffusion/guidance.hpp>
#include <diffuse/diffusion/precond.hpp>
#include <diffuse/diffusion/sampler.hpp>
#include <diffuse/kernels/conv2d.hpp>
#include <diffuse/kernels/gemm.hpp>
#include <diffuse/kernels/group_norm.hpp>
#include <diffuse/kernels/resample.hpp>
#include <diffuse/kernels/softmax.hpp>
#include <diffuse/nn/concat.hpp>
#include <diffuse/nn/linear.hpp>
#include <diffuse/optim/adamw.hpp>
#include <diffuse/optim/ema.hpp>
#include <diffuse/train/trainer.hpp>
#include <diffuse/unet.hpp>

namespace {

using namespace diffuse;
namespace k = diffuse::kernels;

TEST(Device, SelectionByName) {
  DeviceScope keep("cpu");
  EXPECT_EQ(select_device("cpu"), Device::cpu);
  EXPECT_EQ(device_description(), "cpu");
  EXPECT_THROW(select_device("cuda"), DeviceError);
  const Device chosen = select_device("auto");
  EXPECT_EQ(chosen, gpu_unavailable_reason().empty() ? Device::gpu : Device::cpu);
  if (!gpu_unavailable_reason().empty()) {
    try {
      select_device("gpu");
      ADD_FAILURE() << "gpu selected where none can be used";
    } catch (const DeviceError& e) {
      EXPECT_NE(std::string(e.what()).find("no GPU"), std::string::npos) << e.what();
    }
    EXPECT_EQ(active_device(), Device::cpu);  // a failed selection changes nothing
  }
}

TEST(Device, HostCopiesAreNoOpsOnTheCpu) {
  DeviceScope keep("cpu");
  Tensor<float, Shape<dyn, 4>> t(2);
  t = 3.f;
  update_device(t);
  update_host(t);
  EXPECT_EQ(t.data()[7], 3.f);
}

#if DIFFUSE_OFFLOAD_ENABLED

// Selects the GPU, or its host emulation where there is none, for one test.
class OnDevice : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_ = detail::device_state();
    if (select_device("auto") == Device::cpu) detail::emulate_device_on_host();
  }
  void TearDown() override { detail::device_state() = saved_; }

 private:
  detail::DeviceState saved_;
};

// n values of N(0, 1) from `seed`.
std::vector<float> normals(std::size_t n, std::uint64_t seed) {
  std::vector<float> v(n);
  Generator g(seed);
  for (auto& x : v) x = static_cast<float>(diffusion::draw_normal(g));
  return v;
}

// A tensor of shape (n) made on the active device and holding `v`.
using Flat = Shape<dyn>;
Tensor<float, Flat> on_device(const std::vector<float>& v) {
  Tensor<float, Flat> t(v.size());
  std::copy(v.begin(), v.end(), t.data());
  update_device(t);
  return t;
}
std::vector<float> to_host(const Tensor<float, Flat>& t) {
  update_host(t);
  return {t.data(), t.data() + t.size()};
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, float tol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0;
  for (std::size_t i = 0; i < got.size(); ++i) worst = std::max(worst, double(std::abs(got[i] - want[i])));
  EXPECT_LE(worst, tol) << what;
}

TEST_F(OnDevice, GemmAllTransposesBiasAndActivation) {
  const k::index_t m = 13, n = 21, kk = 37;
  const auto a = normals(m * kk, 1), b = normals(kk * n, 2), c0 = normals(m * n, 3), bias = normals(n, 4);
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (float beta : {0.f, 0.5f}) {
        const k::index_t lda = ta ? m : kk, ldb = tb ? kk : n;
        std::vector<float> want = c0;
        {
          DeviceScope cpu("cpu");
          k::gemm<float>(ta, tb, m, n, kk, 1.5f, a.data(), lda, b.data(), ldb, beta, want.data(), n,
                         {bias.data(), k::Activation::silu});
        }
        auto da = on_device(a), db = on_device(b), dc = on_device(c0), dbias = on_device(bias);
        k::gemm<float>(ta, tb, m, n, kk, 1.5f, da.data(), lda, db.data(), ldb, beta, dc.data(), n,
                       {dbias.data(), k::Activation::silu});
        expect_close(to_host(dc), want, 1e-4f, "gemm");
      }
}

TEST_F(OnDevice, GemmBatchedWithSharedOperand) {
  const k::index_t m = 5, n = 9, kk = 7, batch = 3;
  const auto a = normals(batch * m * kk, 5), b = normals(kk * n, 6);
  std::vector<float> want(batch * m * n);
  {
    DeviceScope cpu("cpu");
    k::gemm_batched<float>(false, false, m, n, kk, 1.f, a.data(), kk, m * kk, b.data(), n, 0, 0.f, want.data(), n,
                           m * n, batch);
  }
  auto da = on_device(a), db = on_device(b), dc = on_device(std::vector<float>(batch * m * n));
  k::gemm_batched<float>(false, false, m, n, kk, 1.f, da.data(), kk, m * kk, db.data(), n, 0, 0.f, dc.data(), n,
                         m * n, batch);
  expect_close(to_host(dc), want, 1e-4f, "gemm_batched");
}

TEST_F(OnDevice, ConvolutionForward) {
  for (const k::Conv2dShape s : {k::Conv2dShape{2, 7, 6, 5, 8, 3, 1, 1}, k::Conv2dShape{2, 8, 8, 4, 6, 3, 2, 1},
                                 k::Conv2dShape{3, 5, 5, 6, 4, 1, 1, 0}}) {
    const auto x = normals(s.n * s.h * s.w * s.cin, 7), w = normals(s.k * s.k * s.cin * s.cout, 8),
               bias = normals(s.cout, 9), y0 = normals(s.n * s.oh() * s.ow() * s.cout, 10);
    for (float beta : {0.f, 1.f}) {
      std::vector<float> want = y0;
      {
        DeviceScope cpu("cpu");
        k::conv2d_forward<float>(s, x.data(), w.data(), bias.data(), want.data(), beta);
      }
      auto dx = on_device(x), dw = on_device(w), dbias = on_device(bias), dy = on_device(y0);
      k::conv2d_forward<float>(s, dx.data(), dw.data(), dbias.data(), dy.data(), beta);
      expect_close(to_host(dy), want, 1e-4f, "conv2d_forward");
    }
  }
}

TEST_F(OnDevice, GroupNormWithModulationAndSilu) {
  constexpr std::size_t C = 8, G = 4, hw = 12, n = 3;
  const auto x = normals(n * hw * C, 11), gamma = normals(C, 12), beta = normals(C, 13), ss = normals(n * 2 * C, 14);
  for (bool mod : {false, true})
    for (bool silu : {false, true}) {
      std::vector<float> want(n * hw * C), want_stats(n * G * 2);
      {
        DeviceScope cpu("cpu");
        k::group_norm_forward<float, C, G>(x.data(), want.data(), want_stats.data(), gamma.data(), beta.data(),
                                           mod ? ss.data() : nullptr, silu, n, hw, 1e-5);
      }
      auto dx = on_device(x), dg = on_device(gamma), db = on_device(beta), dss = on_device(ss),
           dy = on_device(std::vector<float>(n * hw * C)), dst = on_device(std::vector<float>(n * G * 2));
      k::group_norm_forward<float, C, G>(dx.data(), dy.data(), dst.data(), dg.data(), db.data(),
                                         mod ? dss.data() : nullptr, silu, n, hw, 1e-5);
      expect_close(to_host(dy), want, 1e-5f, "group_norm_forward y");
      expect_close(to_host(dst), want_stats, 1e-5f, "group_norm_forward stats");
    }
}

TEST_F(OnDevice, SoftmaxUpsampleAndConcat) {
  const auto x = normals(6 * 10, 15);
  std::vector<float> want(x.size());
  {
    DeviceScope cpu("cpu");
    k::softmax_rows<float>(x.data(), want.data(), 6, 9, 10);
  }
  auto dx = on_device(x), dy = on_device(std::vector<float>(x.size()));
  k::softmax_rows<float>(dx.data(), dy.data(), 6, 9, 10);
  auto got = to_host(dy);
  for (std::size_t r = 0; r < 6; ++r)
    for (std::size_t j = 0; j < 9; ++j) EXPECT_NEAR(got[r * 10 + j], want[r * 10 + j], 1e-6f);

  const auto u = normals(2 * 3 * 4 * 5, 16);
  std::vector<float> up(2 * 6 * 8 * 5);
  {
    DeviceScope cpu("cpu");
    k::upsample2x_nearest_forward<float>(u.data(), up.data(), 2, 3, 4, 5);
  }
  auto du = on_device(u), dup = on_device(std::vector<float>(up.size()));
  k::upsample2x_nearest_forward<float>(du.data(), dup.data(), 2, 3, 4, 5);
  expect_close(to_host(dup), up, 0.f, "upsample2x_nearest_forward");

  using A = Shape<dyn, 2, 3, 4>;
  using B = Shape<dyn, 2, 3, 5>;
  Tensor<float, A> a(2);
  Tensor<float, B> b(2);
  Tensor<float, Shape<dyn, 2, 3, 9>> out(2);
  for (std::size_t i = 0; i < a.size(); ++i) a.data()[i] = float(i);
  for (std::size_t i = 0; i < b.size(); ++i) b.data()[i] = -float(i);
  update_device(a);
  update_device(b);
  nn::concat_channels<float, 2, 3, 4, 5>(a, b, out);
  update_host(out);
  for (std::size_t p = 0; p < 12; ++p)
    for (std::size_t q = 0; q < 9; ++q)
      ASSERT_EQ(out.data()[p * 9 + q], q < 4 ? float(p * 4 + q) : -float(p * 5 + q - 4));
}

TEST_F(OnDevice, ExpressionsWithHostVectorsAndAliasing) {
  using S = Shape<dyn, 3, 5>;
  Tensor<float, S> x(4), y(4);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = 0.05f * float(i) - 1.f;
  update_device(x);
  const std::vector<float> per_image = {1.f, 2.f, -1.f, 0.5f};  // a host array, not a tensor
  Tensor<float, Shape<5>> per_channel_values;
  for (std::size_t c = 0; c < 5; ++c) per_channel_values.data()[c] = float(c);
  update_device(per_channel_values);
  y = exp(x) * per_item<S>(per_image) + diffuse::per_channel(per_channel_values);
  y = y + 1.f;
  x.items(1, 2) = x.items(0, 2) * 2.f;  // overlaps x shifted: evaluated through a temporary
  update_host(y);
  update_host(x);
  for (std::size_t i = 0; i < y.size(); ++i) {
    const float xi = 0.05f * float(i) - 1.f;
    EXPECT_NEAR(y.data()[i], std::exp(xi) * per_image[i / 15] + float(i % 5) + 1.f, 1e-5f);
  }
  for (std::size_t i = 15; i < 45; ++i) EXPECT_NEAR(x.data()[i], 2.f * (0.05f * float(i - 15) - 1.f), 1e-6f);
}

TEST_F(OnDevice, LargeExpressionsAndCopiesTakeTheManyTeamsPath) {
  using S = Shape<dyn, 1000>;  // 300 000 elements: more than one warp's share
  Tensor<float, S> x(300), y(300);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = float(i % 977);
  update_device(x);
  y = x * 2.f + 1.f;
  x.items(1, 299) = x.items(0, 299);  // shifted overlap: through a temporary, then a device copy
  update_host(y);
  update_host(x);
  for (std::size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y.data()[i], float(i % 977) * 2.f + 1.f) << i;
  for (std::size_t i = 1000; i < x.size(); ++i) ASSERT_EQ(x.data()[i], float((i - 1000) % 977)) << i;
}

TEST_F(OnDevice, ConvolutionBackward) {
  for (const k::Conv2dShape s : {k::Conv2dShape{2, 7, 6, 5, 8, 3, 1, 1}, k::Conv2dShape{2, 8, 8, 4, 6, 3, 2, 1},
                                 k::Conv2dShape{3, 5, 5, 6, 4, 1, 1, 0}, k::Conv2dShape{1, 9, 7, 3, 2, 3, 3, 0}}) {
    const auto x = normals(s.n * s.h * s.w * s.cin, 21), w = normals(s.k * s.k * s.cin * s.cout, 22),
               gy = normals(s.n * s.oh() * s.ow() * s.cout, 23), dx0 = normals(x.size(), 24),
               dw0 = normals(w.size(), 25), db0 = normals(s.cout, 26);
    for (float beta : {0.f, 1.f}) {
      std::vector<float> want_dx = dx0, want_dw = dw0, want_db = db0;
      {
        DeviceScope cpu("cpu");
        k::conv2d_backward_input<float>(s, gy.data(), w.data(), want_dx.data(), beta);
        k::conv2d_backward_weight<float>(s, x.data(), gy.data(), want_dw.data(), want_db.data(), beta);
      }
      auto dx = on_device(x), dw = on_device(w), dgy = on_device(gy), ddx = on_device(dx0), ddw = on_device(dw0),
           ddb = on_device(db0);
      k::conv2d_backward_input<float>(s, dgy.data(), dw.data(), ddx.data(), beta);
      k::conv2d_backward_weight<float>(s, dx.data(), dgy.data(), ddw.data(), ddb.data(), beta);
      expect_close(to_host(ddx), want_dx, 1e-4f, "conv2d_backward_input");
      expect_close(to_host(ddw), want_dw, 1e-4f, "conv2d_backward_weight dw");
      expect_close(to_host(ddb), want_db, 1e-4f, "conv2d_backward_weight db");
    }
  }
}

TEST_F(OnDevice, GroupNormBackward) {
  constexpr std::size_t C = 8, G = 4, hw = 12, n = 3;
  const auto x = normals(n * hw * C, 31), gamma = normals(C, 32), beta = normals(C, 33), ss = normals(n * 2 * C, 34),
             gy = normals(n * hw * C, 35), dx0 = normals(n * hw * C, 36), dg0 = normals(C, 37), db0 = normals(C, 38);
  std::vector<float> stats(n * G * 2), y(n * hw * C);
  {
    DeviceScope cpu("cpu");
    k::group_norm_forward<float, C, G>(x.data(), y.data(), stats.data(), gamma.data(), beta.data(), ss.data(), true,
                                       n, hw, 1e-5);
  }
  for (bool mod : {false, true})
    for (bool silu : {false, true})
      for (float beta_dx : {0.f, 1.f}) {
        std::vector<float> want_dx = dx0, want_dg = dg0, want_db = db0, want_dss(n * 2 * C), ws(n * hw * C);
        {
          DeviceScope cpu("cpu");
          k::group_norm_backward<float, C, G>(x.data(), stats.data(), gamma.data(), beta.data(),
                                              mod ? ss.data() : nullptr, silu, gy.data(), want_dx.data(), beta_dx,
                                              want_dg.data(), want_db.data(), mod ? want_dss.data() : nullptr,
                                              ws.data(), n, hw);
        }
        auto dx = on_device(x), dst = on_device(stats), dgam = on_device(gamma), dbet = on_device(beta),
             dss_in = on_device(ss), dgy = on_device(gy), ddx = on_device(dx0), ddg = on_device(dg0),
             ddb = on_device(db0), ddss = on_device(std::vector<float>(n * 2 * C)), dws = on_device(ws);
        k::group_norm_backward<float, C, G>(dx.data(), dst.data(), dgam.data(), dbet.data(),
                                            mod ? dss_in.data() : nullptr, silu, dgy.data(), ddx.data(), beta_dx,
                                            ddg.data(), ddb.data(), mod ? ddss.data() : nullptr, dws.data(), n, hw);
        expect_close(to_host(ddx), want_dx, 1e-4f, "group_norm_backward dx");
        expect_close(to_host(ddg), want_dg, 1e-4f, "group_norm_backward dgamma");
        expect_close(to_host(ddb), want_db, 1e-4f, "group_norm_backward dbeta");
        if (mod) expect_close(to_host(ddss), want_dss, 1e-4f, "group_norm_backward dss");
      }
}

TEST_F(OnDevice, SoftmaxUpsampleConcatAndLinearBackward) {
  const auto y = normals(6 * 10, 41), gy = normals(6 * 10, 42);
  std::vector<float> want(y.size());
  {
    DeviceScope cpu("cpu");
    k::softmax_rows_backward<float>(y.data(), gy.data(), want.data(), 6, 9, 10);
  }
  auto dy = on_device(y), dgy = on_device(gy), dx = on_device(std::vector<float>(y.size()));
  k::softmax_rows_backward<float>(dy.data(), dgy.data(), dx.data(), 6, 9, 10);
  auto got = to_host(dx);
  for (std::size_t r = 0; r < 6; ++r)
    for (std::size_t j = 0; j < 9; ++j) EXPECT_NEAR(got[r * 10 + j], want[r * 10 + j], 1e-5f);

  const auto up = normals(2 * 6 * 8 * 5, 43), d0 = normals(2 * 3 * 4 * 5, 44);
  for (float beta : {0.f, 1.f}) {
    std::vector<float> want_d = d0;
    {
      DeviceScope cpu("cpu");
      k::upsample2x_nearest_backward<float>(up.data(), want_d.data(), 2, 3, 4, 5, beta);
    }
    auto dup = on_device(up), dd = on_device(d0);
    k::upsample2x_nearest_backward<float>(dup.data(), dd.data(), 2, 3, 4, 5, beta);
    expect_close(to_host(dd), want_d, 1e-5f, "upsample2x_nearest_backward");
  }

  Tensor<float, Shape<dyn, 2, 3, 9>> gout(2);
  Tensor<float, Shape<dyn, 2, 3, 4>> ga(2);
  Tensor<float, Shape<dyn, 2, 3, 5>> gb(2);
  for (std::size_t i = 0; i < gout.size(); ++i) gout.data()[i] = float(i);
  for (std::size_t i = 0; i < ga.size(); ++i) ga.data()[i] = 1000.f;
  for (std::size_t i = 0; i < gb.size(); ++i) gb.data()[i] = 1000.f;
  update_device(gout);
  update_device(ga);
  update_device(gb);
  nn::concat_channels_backward<float, 2, 3, 4, 5>(gout, ga, 1.f, gb, 0.f);  // a accumulates, b is overwritten
  update_host(ga);
  update_host(gb);
  for (std::size_t p = 0; p < 12; ++p) {
    for (std::size_t q = 0; q < 4; ++q) ASSERT_EQ(ga.data()[p * 4 + q], 1000.f + float(p * 9 + q));
    for (std::size_t q = 0; q < 5; ++q) ASSERT_EQ(gb.data()[p * 5 + q], float(p * 9 + 4 + q));
  }

  // Linear: the bias gradient is a column sum of dy, accumulated.
  nn::Linear<float, 7, 3> lin;
  Tensor<float, Shape<dyn, 7>> lx(4);
  Tensor<float, Shape<dyn, 3>> ldy(4);
  for (std::size_t i = 0; i < lx.size(); ++i) lx.data()[i] = 0.1f * float(i);
  for (std::size_t i = 0; i < ldy.size(); ++i) ldy.data()[i] = float(i) - 5.f;
  update_device(lx);
  update_device(ldy);
  lin.zero_grad();
  lin.backward_params(lx, ldy);
  lin.backward_params(lx, ldy);
  update_host(lin.bias.grad);
  for (std::size_t o = 0; o < 3; ++o) {
    float col = 0;
    for (std::size_t i = 0; i < 4; ++i) col += float(i * 3 + o) - 5.f;
    EXPECT_FLOAT_EQ(lin.bias.grad.data()[o], 2 * col) << o;
  }
}

// A whole guided Heun run of edm-tiny with 10 classes: the images sampled on the device
// are the CPU's within float tolerance.
constexpr nn::UNetConfig tiny_classes = nn::with_classes(nn::edm_tiny, 10);
using Model = diffusion::EDMPrecond<nn::UNet<tiny_classes>>;

TEST_F(OnDevice, GuidedHeunSamplingMatchesTheCpu) {
  using I = Model::Batch;
  const std::vector<int> labels = {3, -1};
  const diffusion::Heun<> heun{.steps = 3};
  Tensor<float, I> want(2);
  {
    DeviceScope cpu("cpu");
    auto model = std::make_unique<Model>(diffusion::Edm{}, 5);
    heun.sample(diffusion::Guided(*model, labels, 2.0), want.view(), 7);
  }
  auto model = std::make_unique<Model>(diffusion::Edm{}, 5);  // made on the device
  Tensor<float, I> got(2);
  heun.sample(diffusion::Guided(*model, labels, 2.0), got.view(), 7);
  update_host(got);
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    worst = std::max(worst, double(std::abs(got.data()[i] - want.data()[i])));
    scale = std::max(scale, double(std::abs(want.data()[i])));
  }
  EXPECT_GT(scale, 0.1);
  EXPECT_LE(worst, 1e-3 * scale) << "largest difference " << worst << " of values up to " << scale;
}

// Training steps of class-conditional edm-tiny (label embedding, every backward kernel,
// the loss, gradient clipping, AdamW, EMA, a power EMA) on the device against the CPU,
// and a checkpoint's tensors read back from the device.
TEST_F(OnDevice, TrainingStepsMatchTheCpu) {
  using Images = train::TensorImages<28, 28, 1>;
  const std::size_t count = 8;
  std::unique_ptr<Images> data;
  {
    DeviceScope cpu("cpu");  // the data set lives on the host, as a program's does
    Tensor<float, Model::Batch> x(count);
    Generator g(91);
    fill_uniform(x, g, -1, 1);
    std::vector<int> labels(count);
    for (std::size_t i = 0; i < count; ++i) labels[i] = static_cast<int>(i % 10);
    data = std::make_unique<Images>(std::move(x), labels);
  }
  train::TrainerConfig cfg;
  cfg.batch = 4;
  cfg.seed = 17;
  cfg.optimizer.lr = 1e-3;
  cfg.optimizer.max_grad_norm = 1.0;  // the norm is far above 1: clipping runs
  cfg.ema.half_life_images = 8;
  cfg.power_ema = {0.1};
  cfg.label_dropout = 0.5;
  constexpr int steps = 3;
  // Every tensor of the training state, by name, read on the host.
  using State = std::map<std::string, std::vector<float>>;
  auto state_of = [](Model& model, auto& trainer) {
    State s;
    model.for_each_param([&](std::string_view name, std::span<float> v, std::span<float>) {
      update_host(v.data(), v.size());
      s[std::string(name)].assign(v.begin(), v.end());
    });
    trainer.for_each_state([&](std::string_view name, std::span<float> v) {
      update_host(v.data(), v.size());
      s[std::string(name)].assign(v.begin(), v.end());
    });
    return s;
  };
  std::vector<train::StepReport> want(steps), got(steps);
  State want_state, got_state;
  {
    DeviceScope cpu("cpu");
    auto model = std::make_unique<Model>(diffusion::Edm{}, 5);
    train::Trainer trainer(*model, *data, cfg);
    for (auto& r : want) r = trainer.step();
    want_state = state_of(*model, trainer);
  }
  auto model = std::make_unique<Model>(diffusion::Edm{}, 5);  // made on the device
  train::Trainer trainer(*model, *data, cfg);
  for (auto& r : got) r = trainer.step();
  got_state = state_of(*model, trainer);
  for (int i = 0; i < steps; ++i) {
    EXPECT_NEAR(got[i].loss, want[i].loss, 1e-4 * want[i].loss) << "step " << i + 1;
    EXPECT_NEAR(got[i].grad_norm, want[i].grad_norm, 1e-4 * want[i].grad_norm) << "step " << i + 1;
    EXPECT_GT(want[i].grad_norm, 1.0);
  }
  ASSERT_EQ(got_state.size(), want_state.size());
  double worst = 0, moved = 0;
  for (const auto& [name, w] : want_state) {
    const auto& v = got_state.at(name);
    ASSERT_EQ(v.size(), w.size()) << name;
    for (std::size_t i = 0; i < w.size(); ++i) worst = std::max(worst, double(std::abs(v[i] - w[i])));
  }
  {  // the weights moved: a device step that changed nothing would not pass
    auto init = std::make_unique<Model>(diffusion::Edm{}, 5);
    init->for_each_param([&](std::string_view name, std::span<float> v, std::span<float>) {
      update_host(v.data(), v.size());
      const auto& w = want_state.at(std::string(name));
      for (std::size_t i = 0; i < w.size(); ++i) moved = std::max(moved, double(std::abs(v[i] - w[i])));
    });
  }
  EXPECT_GT(moved, 1e-3);
  EXPECT_LE(worst, 5e-2 * moved) << "largest difference " << worst << "; the weights moved up to " << moved;
}

// The optimiser, the gradient norm and the EMA run one launch per pass over all the
// parameters (not one per parameter), with the CPU's numbers.
TEST_F(OnDevice, OptimiserAndEmaPassesAreOneLaunchEach) {
  auto model = std::make_unique<Model>(diffusion::Edm{}, 5);
  std::size_t params = 0;
  double ss = 0;  // the sum of squares the chunks must add up to, in double
  model->for_each_param([&](std::string_view, std::span<float>, std::span<float> g) {
    ++params;
    for (std::size_t i = 0; i < g.size(); ++i) {
      g[i] = 0.5f + 1e-3f * static_cast<float>((i + params) % 7);
      ss += double(g[i]) * g[i];
    }
    update_device(g.data(), g.size());
  });
  ASSERT_GT(params, 20u);
  auto launches = [] { return detail::launch_profile().launches[std::size_t(detail::LaunchKind::elementwise)].load(); };
  optim::AdamWConfig config;
  config.max_grad_norm = 1.0;
  optim::AdamW opt(config);
  optim::Ema ema(*model);
  auto before = launches();
  EXPECT_NEAR(optim::grad_norm(*model), std::sqrt(ss), 1e-12 * std::sqrt(ss));
  EXPECT_EQ(launches() - before, 1u);
  before = launches();
  EXPECT_GT(opt.step(*model), 1.0);  // the norm, the clipping, the update
  EXPECT_EQ(launches() - before, 3u);
  before = launches();
  ema.update(*model, 0.9);
  ema.swap_with(*model);
  ema.copy_to(*model);
  EXPECT_EQ(launches() - before, 3u);
  EXPECT_NEAR(optim::grad_norm(*model), 1.0, 1e-5);  // clipped to the norm 1 on the device
}

#endif  // DIFFUSE_OFFLOAD_ENABLED

}  // namespace
