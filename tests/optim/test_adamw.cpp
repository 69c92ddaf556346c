// AdamW against an independent double-precision implementation of PyTorch's algorithm
// (torch.optim.AdamW documentation), a hand-computed first step, warm-up, clipping and
// checkpointing of the state.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <diffuse/optim/adamw.hpp>

#include "toy_model.hpp"

namespace opt = diffuse::optim;
using diffuse::testing::ToyModel;

namespace {

// Some gradient for step t and element i (any function will do).
float grad_at(int t, std::size_t i, bool bias) {
  return static_cast<float>(std::sin(0.7 * t + 1.3 * i + (bias ? 0.4 : 0.0)) * (1.0 + 0.5 * i));
}

void set_grads(ToyModel& m, int t) {
  for (std::size_t i = 0; i < m.dw.size(); ++i) m.dw[i] = grad_at(t, i, false);
  for (std::size_t i = 0; i < m.db.size(); ++i) m.db[i] = grad_at(t, i, true);
}

// PyTorch's AdamW, written from its documentation, in double.
struct ReferenceAdamW {
  double lr, b1, b2, eps, wd;
  std::vector<double> p, m, v;
  int t = 0;
  void step(const std::vector<double>& g) {
    ++t;
    for (std::size_t i = 0; i < p.size(); ++i) {
      p[i] -= lr * wd * p[i];
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const double mhat = m[i] / (1 - std::pow(b1, t)), vhat = v[i] / (1 - std::pow(b2, t));
      p[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
  }
};

}  // namespace

TEST(AdamW, FirstStepByHand) {
  // m^ = g, v^ = g^2 after one step: p1 = p0 (1 - lr wd) - lr g / (|g| + eps).
  ToyModel model;
  model.w = {1.f, 1.f, 1.f, 1.f, 1.f};
  model.dw = {0.5f, -0.5f, 2.f, 0.f, 1e-3f};
  opt::AdamW adam({.lr = 0.1, .weight_decay = 0.01});
  adam.step(model);
  EXPECT_NEAR(model.w[0], 0.999 - 0.1 * 0.5 / (0.5 + 1e-8), 1e-6);  // 0.899
  EXPECT_NEAR(model.w[0], 0.899f, 1e-6);
  EXPECT_NEAR(model.w[1], 1.099f, 1e-6);
  EXPECT_NEAR(model.w[2], 0.899f, 1e-6);
  EXPECT_NEAR(model.w[3], 0.999f, 1e-7);  // zero gradient: only the decay
  EXPECT_NEAR(model.w[4], 0.999 - 0.1 * 1e-3 / (1e-3 + 1e-8), 1e-6);
  EXPECT_EQ(adam.step_count(), 1u);
}

TEST(AdamW, MatchesDoubleReferenceOverSteps) {
  for (double wd : {0.0, 0.1}) {
    ToyModel model;
    opt::AdamW adam({.lr = 0.02, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-6, .weight_decay = wd});
    ReferenceAdamW ref{0.02, 0.8, 0.95, 1e-6, wd, {}, {}, {}};
    for (float x : model.w) ref.p.push_back(x);
    for (float x : model.b) ref.p.push_back(x);
    ref.m.assign(ref.p.size(), 0.0);
    ref.v.assign(ref.p.size(), 0.0);
    for (int t = 1; t <= 8; ++t) {
      set_grads(model, t);
      std::vector<double> g;
      for (float x : model.dw) g.push_back(x);
      for (float x : model.db) g.push_back(x);
      adam.step(model);
      ref.step(g);
      std::vector<float> got(model.w);
      got.insert(got.end(), model.b.begin(), model.b.end());
      for (std::size_t k = 0; k < got.size(); ++k) {
        EXPECT_NEAR(got[k], ref.p[k], 2e-6 * std::max(1.0, std::abs(ref.p[k]))) << "step " << t << " element " << k;
      }
    }
  }
}

TEST(AdamW, WeightDecayIsDecoupled) {
  // With zero gradients the moments stay 0 and only p *= 1 - lr wd acts (Adam's L2
  // penalty would instead go through the moments and give a step of about lr).
  ToyModel model;
  const float w0 = model.w[0];
  opt::AdamW adam({.lr = 0.01, .weight_decay = 0.5});
  for (int t = 0; t < 3; ++t) adam.step(model);
  EXPECT_NEAR(model.w[0], w0 * std::pow(1 - 0.005, 3), 1e-7);
}

TEST(AdamW, LinearWarmUp) {
  opt::AdamW adam({.lr = 1e-3, .warmup_steps = 4});
  EXPECT_DOUBLE_EQ(adam.learning_rate(1), 0.25e-3);
  EXPECT_DOUBLE_EQ(adam.learning_rate(2), 0.5e-3);
  EXPECT_DOUBLE_EQ(adam.learning_rate(4), 1e-3);
  EXPECT_DOUBLE_EQ(adam.learning_rate(100), 1e-3);
  // The first step uses lr / 4: by hand as in FirstStepByHand, without decay.
  ToyModel model;
  model.dw = {1.f, 0, 0, 0, 0};
  opt::AdamW warm({.lr = 0.4, .weight_decay = 0.0, .warmup_steps = 4});
  warm.step(model);
  EXPECT_NEAR(model.w[0], 0.5f - 0.1f, 1e-6);
}

TEST(AdamW, GradientClippingByGlobalNorm) {
  ToyModel model;
  model.zero_grad();
  model.dw[0] = 3.f;
  model.db[2] = 4.f;
  EXPECT_NEAR(opt::grad_norm(model), 5.0, 1e-12);
  // Below the limit: unchanged.
  EXPECT_NEAR(opt::clip_grad_norm(model, 10.0), 5.0, 1e-12);
  EXPECT_EQ(model.dw[0], 3.f);
  // Above: scaled to norm max_norm (PyTorch: factor max / (norm + 1e-6)).
  EXPECT_NEAR(opt::clip_grad_norm(model, 1.0), 5.0, 1e-12);
  EXPECT_NEAR(model.dw[0], 0.6f, 1e-6);
  EXPECT_NEAR(model.db[2], 0.8f, 1e-6);
  EXPECT_NEAR(opt::grad_norm(model), 1.0, 1e-6);
  // Through the optimiser: it returns the norm before clipping.
  model.dw[0] = 30.f;
  model.db[2] = 40.f;
  opt::AdamW adam({.max_grad_norm = 2.0});
  EXPECT_NEAR(adam.step(model), 50.0, 1e-5);
  EXPECT_NEAR(opt::grad_norm(model), 2.0, 1e-5);
}

TEST(AdamW, NonFiniteGradientSkipsTheStep) {
  ToyModel model;
  const auto before = model.w;
  model.dw[1] = std::numeric_limits<float>::infinity();
  opt::AdamW adam({.max_grad_norm = 1.0});
  EXPECT_FALSE(std::isfinite(adam.step(model)));
  EXPECT_EQ(model.w, before);
  EXPECT_EQ(adam.step_count(), 0u);
}

TEST(AdamW, StateRoundTripContinuesIdentically) {
  ToyModel a;
  opt::AdamW adam_a({.lr = 0.05, .weight_decay = 0.1});
  for (int t = 1; t <= 3; ++t) {
    set_grads(a, t);
    adam_a.step(a);
  }
  // "Checkpoint": weights, step count and named state into a map, then into fresh objects.
  std::map<std::string, std::vector<float>> saved;
  adam_a.for_each_state([&](std::string_view name, std::span<float> v) { saved[std::string(name)].assign(v.begin(), v.end()); });
  ASSERT_EQ(saved.size(), 4u);
  EXPECT_TRUE(saved.count("layer.weight.exp_avg"));
  EXPECT_TRUE(saved.count("layer.bias.exp_avg_sq"));
  ToyModel b = a;
  opt::AdamW adam_b(adam_a.config());
  adam_b.init(b);
  adam_b.set_step_count(adam_a.step_count());
  adam_b.for_each_state([&](std::string_view name, std::span<float> v) {
    const auto& s = saved.at(std::string(name));
    std::copy(s.begin(), s.end(), v.begin());
  });
  for (int t = 4; t <= 6; ++t) {
    set_grads(a, t);
    set_grads(b, t);
    adam_a.step(a);
    adam_b.step(b);
  }
  EXPECT_EQ(a.w, b.w);
  EXPECT_EQ(a.b, b.b);
}

// The pass the optimiser and the gradient norm run: chunks of a parameter summed in
// order, every element of every parameter visited once, and no sum without chunks.
TEST(ParamSweep, ChunkedSumAndElementwisePass) {
  std::vector<float> a(10000), b(3), c(0);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = 0.25f + static_cast<float>(i % 5);
  b = {1.f, 2.f, 3.f};
  diffuse::optim::detail::ParamSweep<1> sweep(4096);
  sweep.add(a.size(), {a.data()});
  sweep.add(c.size(), {c.data()});
  sweep.add(b.size(), {b.data()});
  EXPECT_EQ(sweep.items(), 3u + 0u + 1u);  // ceil(10000 / 4096) chunks, none, one
  double want = 0;
  for (float v : a) want += double(v) * v;
  want += 1 + 4 + 9;
  const double got = sweep.sum(diffuse::optim::detail::SumOfSquares{});
  EXPECT_NEAR(got, want, 1e-12 * want);
  diffuse::optim::detail::ParamSweep<1> elementwise;
  elementwise.add(a.size(), {a.data()});
  elementwise.add(b.size(), {b.data()});
  elementwise.run(diffuse::optim::detail::Scale{2.f});
  EXPECT_EQ(a[9999], 2.f * (0.25f + 4.f));
  EXPECT_EQ(b[2], 6.f);
  EXPECT_THROW(elementwise.sum(diffuse::optim::detail::SumOfSquares{}), std::logic_error);
}

TEST(AdamW, MismatchedModelThrows) {
  ToyModel a;
  opt::AdamW adam;
  adam.step(a);
  ToyModel other;
  other.w.resize(6);
  other.dw.resize(6);
  EXPECT_THROW(adam.step(other), std::invalid_argument);
}

// --- against PyTorch (tests/fixtures/make_adamw_fixture.py, torch.optim.AdamW) --------

#include "../fixtures/adamw_fixture.hpp"

TEST(AdamW, MatchesTorchFixture) {
  namespace fx = diffuse::testing::adamw_fixture;
  for (const fx::Run& run : fx::runs) {
    ToyModel model;
    model.w.assign(std::begin(fx::w0), std::end(fx::w0));
    model.b.assign(std::begin(fx::b0), std::end(fx::b0));
    opt::AdamW adam({.lr = run.lr, .beta1 = run.beta1, .beta2 = run.beta2, .eps = run.eps, .weight_decay = run.weight_decay});
    int t = 0;
    for (const fx::Step& s : run.steps) {
      ++t;
      model.dw.assign(std::begin(s.gw), std::end(s.gw));
      model.db.assign(std::begin(s.gb), std::end(s.gb));
      adam.step(model);
      // float32 on both sides, different operation order: a few ulps per step.
      for (std::size_t i = 0; i < 5; ++i)
        EXPECT_NEAR(model.w[i], s.w[i], 1e-6f * std::max(1.f, std::abs(s.w[i]))) << run.name << " step " << t << " w" << i;
      for (std::size_t i = 0; i < 3; ++i)
        EXPECT_NEAR(model.b[i], s.b[i], 1e-6f * std::max(1.f, std::abs(s.b[i]))) << run.name << " step " << t << " b" << i;
    }
  }
}
