// Class-conditional training: the trainer gives every image its own label, drops labels
// at the configured rate (deterministically, from the seed and step), and refuses data
// whose labels the model does not have.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include <diffuse/diffusion/precond.hpp>
#include <diffuse/tensor.hpp>
#include <diffuse/train/evaluate.hpp>
#include <diffuse/train/trainer.hpp>

namespace {

using namespace diffuse;
using Batch = Shape<dyn, 2, 2, 1>;

// F(x, c_noise, label) = a x + b[label + 1]: records the labels it is given.
struct LabelledNet {
  using Batch = ::Batch;
  static constexpr std::size_t classes = 3;
  float a = 0.1f, ga = 0;
  float b[classes + 1] = {}, gb[classes + 1] = {};
  Tensor<float, Batch> x;
  std::vector<int> labels, seen;

  void forward(TensorView<const float, Batch> in, std::span<const float> c, TensorView<float, Batch> out) {
    forward(in, c, {}, out);
  }
  void forward(TensorView<const float, Batch> in, std::span<const float>, std::span<const int> l,
               TensorView<float, Batch> out) {
    x = in;
    labels.assign(l.begin(), l.end());
    if (labels.empty()) labels.assign(in.batch(), -1);
    seen.insert(seen.end(), labels.begin(), labels.end());
    for (std::size_t i = 0; i < in.batch(); ++i) out.item(i) = a * in.item(i) + b[labels[i] + 1];
  }
  void backward(TensorView<const float, Batch> dout) {
    for (std::size_t i = 0; i < dout.batch(); ++i) {
      ga += sum(dout.item(i) * x.item(i));
      gb[labels[i] + 1] += sum(dout.item(i));
    }
  }
  void zero_grad() {
    ga = 0;
    for (float& g : gb) g = 0;
  }
  template <class F>
  void for_each_param(F&& f) {
    f(std::string_view("a"), std::span<float>(&a, 1), std::span<float>(&ga, 1));
    f(std::string_view("b"), std::span<float>(b), std::span<float>(gb));
  }
};

using Model = diffusion::EDMPrecond<LabelledNet>;
using Images = train::TensorImages<2, 2, 1>;

// Labels of the data set, and which images the trainer loaded, in order.
struct RecordingImages {
  using Batch = ::Batch;
  std::vector<int> labels;
  mutable std::vector<std::size_t> loaded;
  std::size_t size() const noexcept { return labels.size(); }
  void load(std::size_t i, TensorView<float, Shape<2, 2, 1>> out) const {
    loaded.push_back(i);
    out = 0.1f * float(i);
  }
  int label(std::size_t i) const noexcept { return labels[i]; }
};
static_assert(train::ImageSource<RecordingImages>);

Images images(std::vector<int> labels) {
  Tensor<float, Batch> x(labels.size());
  return Images(std::move(x), std::move(labels));
}

train::TrainerConfig config(double dropout) {
  train::TrainerConfig c;
  c.batch = 4;
  c.seed = 3;
  c.label_dropout = dropout;
  return c;
}

static_assert(Model::classes == 3);
static_assert(train::Trainer<Model, Images>::classes == 3);

TEST(TrainerLabels, EachImageGetsItsLabelOrNoneAtTheDropoutRate) {
  const RecordingImages data{{0, 1, 2, 2, 1, 0, 1, 2}, {}};
  for (double p : {0.0, 0.25, 1.0}) {
    Model model;
    train::Trainer t(model, data, config(p));
    std::size_t dropped = 0, total = 0;
    for (int s = 0; s < 300; ++s) {
      data.loaded.clear();
      t.step();
      const auto& seen = model.net().labels;
      ASSERT_EQ(seen.size(), data.loaded.size());
      for (std::size_t i = 0; i < seen.size(); ++i) {
        ++total;
        if (seen[i] < 0) ++dropped;
        else ASSERT_EQ(seen[i], data.labels[data.loaded[i]]) << "step " << s << " slot " << i;
      }
    }
    if (p == 0.0) EXPECT_EQ(dropped, 0u);
    else if (p == 1.0) EXPECT_EQ(dropped, total);
    else EXPECT_NEAR(double(dropped) / double(total), p, 0.04) << dropped << " of " << total;  // sd 0.0125
  }
}

TEST(TrainerLabels, LabelsFollowTheSeedAndStep) {
  const auto data = images({0, 1, 2, 2, 1, 0, 1, 2});
  Model m1, m2;
  train::Trainer t1(m1, data, config(0.3)), t2(m2, data, config(0.3));
  for (int s = 0; s < 20; ++s) {
    t1.step();
    t2.step();
  }
  EXPECT_EQ(m1.net().seen, m2.net().seen);
  auto other = config(0.3);
  other.seed = 4;
  Model m3;
  train::Trainer t3(m3, data, other);
  for (int s = 0; s < 20; ++s) t3.step();
  EXPECT_NE(m1.net().seen, m3.net().seen);
}

// Evaluation denoises every image given its own label (never dropped).
TEST(TrainerLabels, EvaluationUsesTheLabels) {
  const RecordingImages data{{2, 0, 1, 1, 0}, {}};
  Model model;
  train::EvalConfig cfg;
  cfg.sigmas = {0.5, 2.0};
  cfg.batch = 2;
  train::evaluate_loss(model, data, cfg);
  const std::vector<int> want = {2, 0, 1, 1, 0, 2, 0, 1, 1, 0};
  EXPECT_EQ(model.net().seen, want);
  // A label the model does not have is named by its index in the data set.
  const RecordingImages bad{{0, 1, 2, 1, 7}, {}};
  try {
    train::evaluate_loss(model, bad, cfg);
    ADD_FAILURE() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("label 7 of image 4"), std::string::npos) << e.what();
  }
}

std::string error_of(const Images& data, double dropout = 0.1) {
  Model model;
  try {
    train::Trainer t(model, data, config(dropout));
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no error";
}

TEST(TrainerLabels, RejectsDataTheModelCannotLearn) {
  Tensor<float, Batch> x(4);
  EXPECT_NE(error_of(Images(std::move(x))).find("class-conditional but image 0 of the data set has no label"),
            std::string::npos);
  EXPECT_NE(error_of(images({0, 1, 3, 2})).find("image 2 has label 3, but the model has 3 classes (0..2)"),
            std::string::npos);
  EXPECT_NE(error_of(images({0, 1, 2, 2}), 1.5).find("label_dropout must be in [0, 1]"), std::string::npos);
  EXPECT_EQ(error_of(images({0, 1, 2, 2})), "no error");
}

}  // namespace
