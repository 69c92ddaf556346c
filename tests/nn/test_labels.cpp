// Tests of class-conditional networks (UNetConfig::classes): the label embedding's
// gradient by finite differences, a conditional edm-tiny against the PyTorch twin, label
// -1 as "no label" (exactly the unconditional network), and clear errors for labels the
// model does not have.
#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <vector>

#include <diffuse/io/safetensors.hpp>

#include "gradcheck.hpp"

namespace {

using namespace diffuse;
using namespace diffuse::nn_test;

constexpr nn::UNetConfig tiny_classes = nn::with_classes(nn::edm_tiny, 10);
using CondD = nn::UNet<tiny_classes, double>;
using CondF = nn::UNet<tiny_classes, float>;
using PlainF = nn::UNet<nn::edm_tiny, float>;

static_assert(CondF::classes == 10 && PlainF::classes == 0);
static_assert(CondF::param_count == PlainF::param_count + 10 * 8);

TEST(NnLabels, EmbeddingGradient) {
  nn::LabelEmbedding<double, 5, 6> layer;
  Generator g(3);
  layer.init(g);
  const std::vector<int> labels = {4, -1, 0, 4};
  Tensor<double, Shape<dyn, 6>> base(4), emb(4), w(4);
  randn(base, 1);
  randn(w, 2);
  auto loss = [&] {
    emb = base;
    layer.forward(labels, emb);
    return dot(emb, w);
  };
  layer.weight.zero_grad();
  loss();
  layer.backward(labels, w);
  const std::vector<double> grad(layer.weight.grad.begin(), layer.weight.grad.end());
  expect_gradient("map_label.weight", layer.weight.values(), grad, loss, 30);
  // Classes nobody asked for get no gradient; label -1 adds nothing.
  for (std::size_t c = 0; c < 6; ++c)
    for (std::size_t k : {1u, 2u, 3u}) EXPECT_EQ(grad[c * 5 + k], 0.0);
  loss();
  for (std::size_t c = 0; c < 6; ++c) EXPECT_EQ(emb(1, c), base(1, c));
}

// The whole conditional network: the gradients that the labels reach (the label table and
// the first embedding layer) and the input gradient, by central differences in double.
TEST(NnLabels, ConditionalNetworkGradient) {
  auto net = std::make_unique<CondD>(5);
  constexpr std::size_t n = 3;
  Tensor<double, CondD::Batch> x(n), out(n), w(n), dx(n);
  randn(x, 6);
  randn(w, 7);
  const std::vector<double> c_noise = {std::log(0.2) / 4, std::log(2.0) / 4, std::log(30.0) / 4};
  const std::vector<int> labels = {7, -1, 2};
  auto run = [&](bool bwd) {
    net->forward(x, c_noise, labels, out);
    if (bwd) net->backward(w, dx);
    return dot(out, w);
  };
  net->zero_grad();
  run(true);
  net->for_each_param([&](std::string_view name, std::span<double> v, std::span<double> g) {
    if (name != "map_label.weight" && name != "map_layer0.weight") return;
    const std::vector<double> grad(g.begin(), g.end());
    expect_gradient(std::string(name), v, grad, [&] { return run(false); }, 16, 1e-5, 1e-5);
  });
  const std::vector<double> gx(dx.begin(), dx.end());
  expect_gradient("dx", span_of(x), gx, [&] { return run(false); }, 6, 1e-5, 1e-5);
}

TEST(NnLabels, MatchesPyTorch) {
  const std::string dir = DIFFUSE_FIXTURES_DIR;
  auto net = std::make_unique<CondF>(0);
  // The unconditional weights plus the label table.
  const io::SafetensorsFile weights(dir + "/edm_tiny_weights.safetensors");
  const io::SafetensorsFile fix(dir + "/edm_tiny_labels.safetensors");
  net->for_each_param_ref([&](const nn::ParamRef<float>& p) {
    nn::read_param(p.name == "map_label.weight" ? fix : weights, p, p.value);
  });
  const io::SafetensorsFile io_file(dir + "/edm_tiny_io.safetensors");
  constexpr std::size_t n = 3, H = 28;
  using kernels::index_t;
  auto to_nhwc = [&](const io::SafetensorsFile& f, const char* name, Tensor<float, CondF::Batch>& t) {
    const auto v = f.read_vector(name, {n, 1, H, H});
    nn::nchw_to_nhwc(v.data(), t.data(), index_t(n), 1, index_t(H), index_t(H));
  };
  Tensor<float, CondF::Batch> x(n), dout(n), out(n), dx(n), want_out(n), want_dx(n);
  to_nhwc(io_file, "x", x);
  to_nhwc(io_file, "dout", dout);
  to_nhwc(fix, "out", want_out);
  to_nhwc(fix, "dx", want_dx);
  const auto c_noise = io_file.read_vector("c_noise", {n});
  std::vector<int> labels;
  for (float l : fix.read_vector("labels", {n})) labels.push_back(static_cast<int>(l));
  ASSERT_EQ(labels[1], -1);  // the fixture mixes labelled and unlabelled images
  net->zero_grad();
  net->forward(x, c_noise, labels, out);
  EXPECT_LT(relative_error({out.data(), out.size()}, {want_out.data(), want_out.size()}), 1e-4);
  net->backward(dout, dx);
  EXPECT_LT(relative_error({dx.data(), dx.size()}, {want_dx.data(), want_dx.size()}), 1e-3);
  net->for_each_param_ref([&](const nn::ParamRef<float>& p) {
    if (p.name != "map_label.weight" && p.name != "map_layer0.weight") return;
    const auto want = fix.read_vector("grad." + std::string(p.name), {p.torch_shape[0], p.torch_shape[1]});
    EXPECT_LT(relative_error(p.grad, want), 1e-3) << p.name;
  });
}

// Label -1 is the zero one-hot vector: the conditional network then computes exactly what
// the unconditional one with the same other weights computes, also without a label list.
TEST(NnLabels, NoLabelIsTheUnconditionalNetwork) {
  auto cond = std::make_unique<CondF>(11);
  auto plain = std::make_unique<PlainF>(0);
  std::vector<std::span<float>> from;
  cond->for_each_param([&](std::string_view name, std::span<float> v, std::span<float>) {
    if (name != "map_label.weight") from.push_back(v);
  });
  std::size_t k = 0;
  plain->for_each_param([&](std::string_view, std::span<float> v, std::span<float>) {
    std::copy(from[k].begin(), from[k].end(), v.begin());
    ++k;
  });
  constexpr std::size_t n = 2;
  Tensor<float, CondF::Batch> x(n), a(n), b(n), c(n), d(n);
  Generator g(12);
  fill_normal(x, g);
  const std::vector<float> c_noise = {-0.5f, 0.7f};
  const std::vector<int> none = {-1, -1}, some = {4, -1};
  cond->forward(x, c_noise, none, a);
  plain->forward(x, c_noise, b);
  cond->forward(x, c_noise, c);
  cond->forward(x, c_noise, some, d);
  for (std::size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a.data()[i], b.data()[i]) << i;
    ASSERT_EQ(c.data()[i], b.data()[i]) << i;
  }
  // A label changes its own image only.
  double changed = 0;
  for (std::size_t i = 0; i < CondF::Batch::item_size; ++i) changed += std::abs(d.data()[i] - a.data()[i]);
  EXPECT_GT(changed, 1e-3);
  for (std::size_t i = CondF::Batch::item_size; i < d.size(); ++i) ASSERT_EQ(d.data()[i], a.data()[i]) << i;
}

TEST(NnLabels, LabelsOutsideTheModelAreErrors) {
  auto cond = std::make_unique<CondF>(0);
  auto plain = std::make_unique<PlainF>(0);
  Tensor<float, CondF::Batch> x(2), out(2);
  const std::vector<float> c_noise = {0.f, 0.f};
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  EXPECT_NE(message([&] { cond->forward(x, c_noise, std::vector<int>{0, 10}, out); })
                .find("label 10 of image 1 is not a class of this model (0..9, or -1 for none)"),
            std::string::npos);
  EXPECT_NE(message([&] { cond->forward(x, c_noise, std::vector<int>{-2, 0}, out); }).find("label -2"),
            std::string::npos);
  EXPECT_NE(message([&] { plain->forward(x, c_noise, std::vector<int>{3, -1}, out); }).find("it has no classes"),
            std::string::npos);
  EXPECT_THROW(cond->forward(x, c_noise, std::vector<int>{1}, out), ShapeError);
  EXPECT_NO_THROW(plain->forward(x, c_noise, std::vector<int>{-1, -1}, out));
}

}  // namespace
