// Classifier-free guidance: the mix D_u + w (D_c - D_u) per image, one pass when no mix
// is needed, and the real conditional edm-tiny under guidance scales 1 and 0.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <stdexcept>
#include <vector>

#include <diffuse/diffusion/guidance.hpp>
#include <diffuse/diffusion/precond.hpp>
#include <diffuse/diffusion/sampler.hpp>
#include <diffuse/unet.hpp>

namespace {

using namespace diffuse;
using Batch = Shape<dyn, 2, 2, 1>;

// D(x; sigma, label) = x / 2 + sigma (label + 2) + k at pixel k: counts its calls.
struct FakeModel {
  using Batch = ::Batch;
  using T = float;
  static constexpr std::size_t classes = 3;
  int calls = 0;
  std::size_t last_batch = 0;
  void forward(TensorView<const float, Batch> x, std::span<const float> sigma, std::span<const int> labels,
               TensorView<float, Batch> out) {
    ++calls;
    last_batch = x.batch();
    for (std::size_t i = 0; i < x.batch(); ++i)
      for (std::size_t k = 0; k < 4; ++k)
        out.data()[i * 4 + k] = x.data()[i * 4 + k] / 2 + sigma[i] * float(labels[i] + 2) + float(k);
  }
  static float d(float x, float sigma, int label, std::size_t k) { return x / 2 + sigma * float(label + 2) + float(k); }
};

TEST(Guidance, MixesConditionalAndUnconditionalPerImage) {
  FakeModel model;
  const std::vector<int> labels = {2, -1, 0};
  diffusion::Guided guided(model, labels, 3.0);
  Tensor<float, Batch> x(3), out(3);
  for (std::size_t k = 0; k < x.size(); ++k) x.data()[k] = 0.1f * float(k);
  guided(x, 0.5f, out);
  EXPECT_EQ(model.calls, 1);
  EXPECT_EQ(model.last_batch, 6u);  // conditional and unconditional in one batch
  EXPECT_EQ(guided.network_passes(), 2u);
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t k = 0; k < 4; ++k) {
      const float xv = x.data()[i * 4 + k];
      const float u = FakeModel::d(xv, 0.5f, -1, k), c = FakeModel::d(xv, 0.5f, labels[i], k);
      const float want = labels[i] < 0 ? u : u + 3.0f * (c - u);
      EXPECT_FLOAT_EQ(out.data()[i * 4 + k], want) << i << " " << k;
    }
}

// One sigma per image (DpmAdaptive): image i is what a call with sigma_i for every image
// gives for image i, in both the guided and the plain pass.
TEST(Guidance, OneSigmaPerImage) {
  FakeModel model;
  const std::vector<int> labels = {2, -1, 0};
  const std::vector<float> sigma = {0.5f, 2.0f, 7.0f};
  Tensor<float, Batch> x(3), out(3), one(3);
  for (std::size_t k = 0; k < x.size(); ++k) x.data()[k] = 0.1f * float(k);
  for (double w : {3.0, 1.0}) {
    diffusion::Guided guided(model, labels, w);
    guided(x, std::span<const float>(sigma), out);
    for (std::size_t i = 0; i < 3; ++i) {
      guided(x, sigma[i], one);
      for (std::size_t k = 0; k < 4; ++k) EXPECT_EQ(out.data()[i * 4 + k], one.data()[i * 4 + k]) << w << " " << i;
    }
    EXPECT_THROW(guided(x, std::span<const float>(sigma.data(), 2), out), ShapeError);
  }
}

TEST(Guidance, NeedsOnePassWithoutAMix) {
  FakeModel model;
  Tensor<float, Batch> x(2), out(2);
  diffusion::Guided plain(model, {1, 2}, 1.0);  // w = 1: the conditional denoiser
  plain(x, 1.f, out);
  EXPECT_EQ(model.last_batch, 2u);
  EXPECT_EQ(plain.network_passes(), 1u);
  EXPECT_FLOAT_EQ(out.data()[4], FakeModel::d(0, 1.f, 2, 0));
  diffusion::Guided none(model, {-1, -1}, 5.0);  // nothing to guide towards
  none(x, 1.f, out);
  EXPECT_EQ(model.last_batch, 2u);
  EXPECT_FLOAT_EQ(out.data()[0], FakeModel::d(0, 1.f, -1, 0));
}

TEST(Guidance, RejectsLabelsAndBatchesThatDoNotFit) {
  FakeModel model;
  EXPECT_THROW(diffusion::Guided(model, {3}, 2.0), std::invalid_argument);
  EXPECT_THROW(diffusion::Guided(model, {-2}, 2.0), std::invalid_argument);
  EXPECT_THROW(diffusion::Guided(model, {0}, std::nan("")), std::invalid_argument);
  EXPECT_THROW(diffusion::Guided(model, {0}, HUGE_VAL), std::invalid_argument);
  diffusion::Guided g(model, {0, 1}, 2.0);
  Tensor<float, Batch> x(3), out(3);
  EXPECT_THROW(g(x, 1.f, out), ShapeError);
}

// The real thing: edm-tiny with 10 classes inside EDM's preconditioning. Scale 1 is the
// conditional denoiser and scale 0 the unconditional one, image by image; and a guided
// sampler run is reproducible and differs from the unguided one.
constexpr nn::UNetConfig tiny_classes = nn::with_classes(nn::edm_tiny, 10);
using Cond = diffusion::EDMPrecond<nn::UNet<tiny_classes>>;

TEST(Guidance, ScalesOneAndZeroAreTheConditionalAndUnconditionalModel) {
  auto model = std::make_unique<Cond>(diffusion::Edm{}, 3);
  using I = Cond::Batch;
  Tensor<float, I> x(2), cond(2), uncond(2), g1(2), g0(2);
  Generator gen(1);
  fill_normal(x, gen);
  const std::vector<int> labels = {4, 7}, none = {-1, -1};
  const std::vector<float> sigma = {1.5f, 1.5f};
  model->forward(x, sigma, labels, cond);
  model->forward(x, sigma, none, uncond);
  diffusion::Guided(*model, labels, 1.0)(x, 1.5f, g1);
  diffusion::Guided(*model, labels, 0.0)(x, 1.5f, g0);
  double diff = 0;
  for (std::size_t k = 0; k < x.size(); ++k) {
    EXPECT_NEAR(g1.data()[k], cond.data()[k], 1e-5f);
    EXPECT_NEAR(g0.data()[k], uncond.data()[k], 1e-5f);
    diff += std::abs(cond.data()[k] - uncond.data()[k]);
  }
  EXPECT_GT(diff, 1e-3);  // the labels matter, so the comparisons above could fail

  Tensor<float, I> a(2), b(2), c(2);
  const diffusion::Heun<> heun{.steps = 4};
  heun.sample(diffusion::Guided(*model, labels, 2.0), a.view(), 9);
  heun.sample(diffusion::Guided(*model, labels, 2.0), b.view(), 9);
  heun.sample(diffusion::Guided(*model, labels, 1.0), c.view(), 9);
  double between = 0;
  for (std::size_t k = 0; k < a.size(); ++k) {
    ASSERT_EQ(a.data()[k], b.data()[k]);
    between += std::abs(a.data()[k] - c.data()[k]);
  }
  EXPECT_GT(between, 1e-3);
}

}  // namespace
