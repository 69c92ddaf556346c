// Preconditionings (EDM Table 1), the Precond wrapper and the training loss, with a mock
// network: F(x, c)_i = a[ch] x + b[ch] + g c_i (per-channel affine, plus the noise input),
// whose parameter gradients are checked by central differences (the loss is quadratic in
// the parameters, so central differences are exact up to rounding).
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

#include <diffuse/diffusion/noise.hpp>
#include <diffuse/diffusion/precond.hpp>
#include <diffuse/diffusion/sampler.hpp>
#include <diffuse/tensor.hpp>

#include "support/threads.hpp"

namespace dd = diffuse::diffusion;
using diffuse::dyn;
using diffuse::Shape;
using diffuse::Tensor;
using diffuse::TensorView;

namespace {

template <std::size_t H, std::size_t W, std::size_t C>
struct AffineNet {
  using Batch = Shape<dyn, H, W, C>;
  std::vector<float> a = std::vector<float>(C, 0.f), b = std::vector<float>(C, 0.f), g = {0.f};
  std::vector<float> da = std::vector<float>(C, 0.f), db = std::vector<float>(C, 0.f), dg = {0.f};
  Tensor<float, Batch> saved_x;
  std::vector<float> saved_c;
  const float* last_in = nullptr;  // where forward's input lives (to see buffer reuse)

  void forward(TensorView<const float, Batch> x, std::span<const float> c, TensorView<float, Batch> out) {
    last_in = x.data();
    saved_x = x;
    saved_c.assign(c.begin(), c.end());
    for (std::size_t i = 0; i < x.batch(); ++i)
      for (std::size_t k = 0; k < Batch::item_size; ++k) {
        const std::size_t j = i * Batch::item_size + k, ch = k % C;
        out.data()[j] = a[ch] * x.data()[j] + b[ch] + g[0] * c[i];
      }
  }
  void backward(TensorView<const float, Batch> dout) {
    for (std::size_t i = 0; i < dout.batch(); ++i)
      for (std::size_t k = 0; k < Batch::item_size; ++k) {
        const std::size_t j = i * Batch::item_size + k, ch = k % C;
        da[ch] += dout.data()[j] * saved_x.data()[j];
        db[ch] += dout.data()[j];
        dg[0] += dout.data()[j] * saved_c[i];
      }
  }
  template <class F>
  void for_each_param(F&& f) {
    f(std::string_view("a"), std::span<float>(a), std::span<float>(da));
    f(std::string_view("b"), std::span<float>(b), std::span<float>(db));
    f(std::string_view("g"), std::span<float>(g), std::span<float>(dg));
  }
  void zero_grad() {
    for (auto* v : {&da, &db, &dg})
      for (auto& x : *v) x = 0.f;
  }
};

using Net = AffineNet<3, 2, 2>;
using Batch = Net::Batch;

dd::Coefficients edm_reference(double s, double sd) {
  // Table 1, written out again.
  return {sd * sd / (s * s + sd * sd), s * sd / std::sqrt(sd * sd + s * s), 1.0 / std::sqrt(sd * sd + s * s),
          std::log(s) / 4.0};
}

template <class Policy>
void fill_inputs(dd::Precond<Policy, Net>& p, Tensor<float, Batch>& y, Tensor<float, Batch>& noise,
                 std::vector<float>& sigma) {
  diffuse::Generator gen(11);
  diffuse::fill_normal(y, gen, 0.0, 0.5);
  dd::draw_training_noise(dd::default_loss(p.policy()), 5, 0, 0, std::span<float>(sigma), noise.view());
  auto& net = p.net();
  net.a = {0.7f, -0.3f};
  net.b = {0.1f, 0.2f};
  net.g = {0.4f};
}

}  // namespace

TEST(Precond, EdmCoefficientsAndWeight) {
  const dd::Edm edm{};
  for (double s : {0.002, 0.1, 0.5, 1.0, 7.3, 80.0}) {
    const auto c = edm.coefficients(s), r = edm_reference(s, 0.5);
    EXPECT_NEAR(c.c_skip, r.c_skip, 1e-15);
    EXPECT_NEAR(c.c_out, r.c_out, 1e-15);
    EXPECT_NEAR(c.c_in, r.c_in, 1e-13);
    EXPECT_NEAR(c.c_noise, r.c_noise, 1e-15);
    // lambda(sigma) c_out(sigma)^2 = 1: every noise level weighs F's error equally.
    EXPECT_NEAR(dd::EDMLoss{}.weight(s) * c.c_out * c.c_out, 1.0, 1e-12);
  }
  // sigma = sigma_data: c_skip = 1/2, c_out = c_in * sd^2 ... by hand: c_out = 0.25/sqrt(0.5).
  const auto h = edm.coefficients(0.5);
  EXPECT_DOUBLE_EQ(h.c_skip, 0.5);
  EXPECT_NEAR(h.c_out, 0.35355339059327373, 1e-15);
  EXPECT_NEAR(h.c_in, 1.4142135623730951, 1e-15);
  EXPECT_NEAR(dd::EDMLoss{}.weight(0.5), 8.0, 1e-14);
}

TEST(Precond, VpAndVeCoefficients) {
  const dd::Vp vp{};
  const double s = 2.0;
  const auto c = vp.coefficients(s);
  EXPECT_EQ(c.c_skip, 1.0);
  EXPECT_EQ(c.c_out, -2.0);
  EXPECT_NEAR(c.c_in, 1.0 / std::sqrt(5.0), 1e-15);
  const double t = (std::sqrt(0.01 + 2 * 19.9 * std::log(5.0)) - 0.1) / 19.9;
  EXPECT_NEAR(c.c_noise, 999.0 * t, 1e-10);
  EXPECT_NEAR(vp.sigma(t), s, 1e-12);
  EXPECT_NEAR(dd::VPLoss{}.weight(s), 0.25, 1e-15);
  const dd::Ve ve{};
  const auto v = ve.coefficients(s);
  EXPECT_EQ(v.c_skip, 1.0);
  EXPECT_EQ(v.c_out, 2.0);
  EXPECT_EQ(v.c_in, 1.0);
  EXPECT_NEAR(v.c_noise, 0.0, 1e-15);  // ln(2 / 2)
}

TEST(Precond, TrainingSigmaDistributions) {
  const std::size_t n = 20000;
  Tensor<float, Shape<dyn, 1, 1, 1>> noise(n);
  std::vector<float> sigma(n);
  auto moments = [&](auto f) {
    double m = 0, m2 = 0;
    for (float s : sigma) {
      const double v = f(s);
      m += v;
      m2 += v * v;
    }
    m /= n;
    return std::pair<double, double>{m, std::sqrt(m2 / n - m * m)};
  };
  // EDM: ln sigma ~ N(-1.2, 1.2^2). Standard errors: 1.2/sqrt(n) = 0.0085 and 0.006.
  dd::draw_training_noise(dd::EDMLoss{}, 1, 0, 0, std::span<float>(sigma), noise.view());
  auto [m, sd] = moments([](float s) { return std::log(s); });
  EXPECT_NEAR(m, -1.2, 0.04);
  EXPECT_NEAR(sd, 1.2, 0.03);
  // The unit noise drawn alongside is N(0, 1).
  EXPECT_NEAR(diffuse::mean(noise), 0.0, 0.03);
  EXPECT_NEAR(diffuse::mean(noise * noise), 1.0, 0.05);
  // VE: ln sigma ~ U(ln 0.02, ln 100): mean ln(0.02*100)/2, std (ln 5000)/sqrt(12).
  dd::draw_training_noise(dd::VELoss{}, 2, 0, 0, std::span<float>(sigma), noise.view());
  std::tie(m, sd) = moments([](float s) { return std::log(s); });
  EXPECT_NEAR(m, 0.5 * std::log(2.0), 0.05);
  EXPECT_NEAR(sd, std::log(5000.0) / std::sqrt(12.0), 0.03);
  // VP: t(sigma) ~ U(1e-5, 1).
  const dd::Vp vp{};
  dd::draw_training_noise(dd::VPLoss{}, 3, 0, 0, std::span<float>(sigma), noise.view());
  std::tie(m, sd) = moments([&](float s) { return vp.t(s); });
  EXPECT_NEAR(m, 0.5, 0.01);
  EXPECT_NEAR(sd, 1.0 / std::sqrt(12.0), 0.01);
}

TEST(Precond, TrainingNoiseIndependentOfBatchSplit) {
  const std::size_t n = 8;
  Tensor<float, Batch> whole(n), part(n);
  std::vector<float> sw(n), sp(n);
  dd::draw_training_noise(dd::EDMLoss{}, 9, 4, 0, std::span<float>(sw), whole.view());
  dd::draw_training_noise(dd::EDMLoss{}, 9, 4, 0, std::span<float>(sp).subspan(0, 3), part.items(0, 3));
  dd::draw_training_noise(dd::EDMLoss{}, 9, 4, 3, std::span<float>(sp).subspan(3), part.items(3, 5));
  EXPECT_EQ(sw, sp);
  for (std::size_t k = 0; k < whole.size(); ++k) ASSERT_EQ(whole.data()[k], part.data()[k]);
  // Another step gives other numbers.
  dd::draw_training_noise(dd::EDMLoss{}, 9, 5, 0, std::span<float>(sp), part.view());
  EXPECT_NE(sw, sp);
}

TEST(Precond, ForwardIsSkipPlusScaledNet) {
  dd::EDMPrecond<Net> p;
  const std::size_t n = 4;
  Tensor<float, Batch> y(n), noise(n), out(n);
  std::vector<float> sigma(n);
  fill_inputs(p, y, noise, sigma);
  sigma = {0.01f, 0.5f, 2.f, 60.f};
  p.forward(y.view(), std::span<const float>(sigma), out.view());
  const auto& net = p.net();
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = edm_reference(sigma[i], 0.5);
    for (std::size_t k = 0; k < Batch::item_size; ++k) {
      const std::size_t j = i * Batch::item_size + k, ch = k % 2;
      const double x = y.data()[j];
      const double f = net.a[ch] * (c.c_in * x) + net.b[ch] + net.g[0] * c.c_noise;
      EXPECT_NEAR(out.data()[j], c.c_skip * x + c.c_out * f, 2e-6 * (1 + std::abs(x))) << i << " " << k;
    }
  }
  // The sampler's call with one sigma equals forward with that sigma for every image.
  Tensor<float, Batch> out2(n);
  std::vector<float> same(n, 2.f);
  p.forward(y.view(), std::span<const float>(same), out.view());
  p(y.view(), 2.f, out2.view());
  for (std::size_t k = 0; k < out.size(); ++k) EXPECT_EQ(out.data()[k], out2.data()[k]);
}

TEST(Precond, LossMatchesDefinition) {
  dd::EDMPrecond<Net> p;
  const std::size_t n = 5;
  Tensor<float, Batch> y(n), noise(n), d(n), x(n);
  std::vector<float> sigma(n);
  fill_inputs(p, y, noise, sigma);
  const float loss = p.loss(y.view(), std::span<const float>(sigma), noise.view());
  // Independently: x = y + sigma n, D = forward(x), loss = mean_i w_i sum (D - y)^2.
  for (std::size_t i = 0; i < n; ++i) x.item(i) = y.item(i) + sigma[i] * noise.item(i);
  p.forward(x.view(), std::span<const float>(sigma), d.view());
  double total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double ss = 0;
    for (std::size_t k = 0; k < Batch::item_size; ++k) {
      const std::size_t j = i * Batch::item_size + k;
      ss += std::pow(double(d.data()[j]) - y.data()[j], 2);
    }
    const double w = (sigma[i] * double(sigma[i]) + 0.25) / (sigma[i] * double(sigma[i]) * 0.25);
    EXPECT_NEAR(p.loss_per_image()[i], w * ss, 1e-4 * w * ss + 1e-6);
    total += w * ss;
  }
  EXPECT_NEAR(loss, total / n, 1e-4 * total / n);
  // loss_backward needs a loss() just before it.
  EXPECT_THROW(p.loss_backward(), std::logic_error);
}

template <class Policy>
void check_loss_gradient() {
  dd::Precond<Policy, Net> p;
  const std::size_t n = 6;
  Tensor<float, Batch> y(n), noise(n);
  std::vector<float> sigma(n);
  fill_inputs(p, y, noise, sigma);
  p.zero_grad();
  p.loss(y.view(), std::span<const float>(sigma), noise.view());
  p.loss_backward(1.f);
  std::vector<float> analytic;
  p.for_each_param([&](std::string_view, std::span<float>, std::span<float> g) {
    analytic.insert(analytic.end(), g.begin(), g.end());
  });
  std::size_t idx = 0;
  p.for_each_param([&](std::string_view name, std::span<float> v, std::span<float>) {
    for (std::size_t e = 0; e < v.size(); ++e, ++idx) {
      const float keep = v[e], h = 1e-2f;
      v[e] = keep + h;
      const double lp = p.loss(y.view(), std::span<const float>(sigma), noise.view());
      v[e] = keep - h;
      const double lm = p.loss(y.view(), std::span<const float>(sigma), noise.view());
      v[e] = keep;
      const double fd = (lp - lm) / (2.0 * h);
      const double scale = std::max(1.0, std::abs(lp) + std::abs(lm));
      EXPECT_NEAR(analytic[idx], fd, 2e-4 * scale) << name << "[" << e << "]";
    }
  });
  // Gradients accumulate, and scale multiplies them.
  p.loss(y.view(), std::span<const float>(sigma), noise.view());
  p.loss_backward(0.5f);
  idx = 0;
  p.for_each_param([&](std::string_view, std::span<float>, std::span<float> g) {
    for (float v : g) {
      EXPECT_NEAR(v, 1.5f * analytic[idx], 1e-5f * std::max(1.f, std::abs(analytic[idx])));
      ++idx;
    }
  });
}

TEST(Precond, LossGradientEdm) { check_loss_gradient<dd::Edm>(); }
TEST(Precond, LossGradientVp) { check_loss_gradient<dd::Vp>(); }
TEST(Precond, LossGradientVe) { check_loss_gradient<dd::Ve>(); }

TEST(Precond, BackwardScalesByCout) {
  dd::Precond<dd::Ve, Net> p;
  const std::size_t n = 2;
  Tensor<float, Batch> x(n), out(n), dout(n);
  std::vector<float> sigma = {3.f, 0.5f};
  diffuse::Generator gen(3);
  diffuse::fill_normal(x, gen);
  dout = 1.f;
  p.zero_grad();
  p.forward(x.view(), std::span<const float>(sigma), out.view());
  p.backward(dout.view());
  // VE: c_out = sigma, c_in = 1, so db[ch] = sum_i sigma_i * (pixels per channel) = 3.5 * 6.
  EXPECT_NEAR(p.net().db[0], 3.5f * 6, 1e-5);
  EXPECT_NEAR(p.net().db[1], 3.5f * 6, 1e-5);
  Tensor<float, Batch> wrong(3);
  EXPECT_THROW(p.backward(wrong.view()), diffuse::ShapeError);
}

TEST(Precond, BuffersReusedForTheSameBatch) {
  dd::EDMPrecond<Net> p;
  const std::size_t n = 4;
  Tensor<float, Batch> y(n), noise(n);
  std::vector<float> sigma(n);
  fill_inputs(p, y, noise, sigma);
  p.loss(y.view(), std::span<const float>(sigma), noise.view());
  const float* first = p.net().last_in;
  for (int r = 0; r < 3; ++r) {
    p.loss(y.view(), std::span<const float>(sigma), noise.view());
    p.loss_backward();
    EXPECT_EQ(p.net().last_in, first);
  }
  // A sampler's call with the same batch reuses them too.
  Tensor<float, Batch> out(n);
  p(y.view(), 1.f, out.view());
  EXPECT_EQ(p.net().last_in, first);
}

// A preconditioned network drives a sampler. With F = 0, EDM's D(x; s) = c_skip x =
// sd^2 / (sd^2 + s^2) x is the exact denoiser of data N(0, sd^2 I), so Heun must
// produce pixels with variance sigma_data^2 = 0.25. (With 18 steps the discretisation
// alone scales the variance by 1.11 for this ODE, computed separately; 64 steps: 1.007.)
TEST(Precond, DrivesASampler) {
  dd::EDMPrecond<Net> model;  // AffineNet starts at a = b = g = 0
  const dd::Heun<dd::KarrasSchedule> heun{.steps = 64};
  const std::size_t n = 2000;
  Tensor<float, Batch> x(n);
  heun.sample(model, x.view(), 3);
  const double m = diffuse::mean(x), v = diffuse::mean(x * x) - m * m;
  // 24000 pixels: standard errors 0.0032 (mean) and 0.0023 (variance).
  EXPECT_NEAR(m, 0.0, 0.02);
  EXPECT_NEAR(v, 0.25, 0.015);
}

TEST(Precond, LossSameBitsForOneAndTwoThreadsAndSplitConsistent) {
  const std::size_t n = 4000;  // 48000 elements: the per-image loops run in parallel
  dd::EDMPrecond<Net> p;
  Tensor<float, Batch> y(n), noise(n);
  std::vector<float> sigma(n);
  fill_inputs(p, y, noise, sigma);
  auto run = [&](int threads) {
    float loss = 0;
    std::vector<float> grads;
    diffuse::testing::with_threads(threads, [&] {
      p.zero_grad();
      loss = p.loss(y.view(), std::span<const float>(sigma), noise.view());
      p.loss_backward();
    });
    p.for_each_param([&](std::string_view, std::span<float>, std::span<float> g) { grads.insert(grads.end(), g.begin(), g.end()); });
    return std::pair{loss, grads};
  };
  const auto one = run(1), two = run(2);
  EXPECT_EQ(one.first, two.first);
  EXPECT_EQ(one.second, two.second);
  // The batch mean splits: (3 loss_3 + 5 loss_5) / 8 = loss_8.
  const float l8 = p.loss(y.items(0, 8), std::span<const float>(sigma).subspan(0, 8), noise.items(0, 8));
  const float l3 = p.loss(y.items(0, 3), std::span<const float>(sigma).subspan(0, 3), noise.items(0, 3));
  const float l5 = p.loss(y.items(3, 5), std::span<const float>(sigma).subspan(3, 5), noise.items(3, 5));
  EXPECT_NEAR((3 * l3 + 5 * l5) / 8, l8, 1e-5f * l8);
}
