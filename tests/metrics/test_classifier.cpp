// The Fréchet distance's feature network: its layers' gradients by central differences
// in double (global average pooling, softmax cross-entropy, the whole classifier), its
// accuracy on Fashion-MNIST after a short training (a floor it clears with a margin),
// saving and loading with the refusals, and the features' statistics.
#include <gtest/gtest.h>

#include <filesystem>
#include <numeric>
#include <vector>

#include "diffuse/io/idx.hpp"
#include "diffuse/metrics/classifier.hpp"
#include "nn/gradcheck.hpp"

namespace {

using namespace diffuse;
using namespace diffuse::nn;
using namespace diffuse::nn_test;

TEST(NnGlobalAvgPool, Gradient) {
  using Pool = nn::GlobalAvgPool<double, 3, 2, 5>;
  Tensor<double, Pool::In> x(2), dx(2);
  Tensor<double, Pool::Out> y(2), w(2);
  randn(x, 1);
  randn(w, 2);
  auto run = [&](bool bwd) {
    Pool::forward(x, y);
    if (bwd) Pool::backward(w, dx);
    return dot(y, w);
  };
  run(true);
  EXPECT_NEAR(y(1, 3), (x(1, 0, 0, 3) + x(1, 0, 1, 3) + x(1, 1, 0, 3) + x(1, 1, 1, 3) + x(1, 2, 0, 3) + x(1, 2, 1, 3)) / 6,
              1e-12);
  const std::vector<double> grad(dx.begin(), dx.end());
  expect_gradient("pool dx", span_of(x), grad, [&] { return run(false); }, 60);
}

TEST(NnCrossEntropy, ValueAndGradient) {
  Tensor<double, Shape<dyn, 4>> z(3), dz(3);
  randn(z, 3, 2.0);
  const std::vector<int> labels{2, 0, 3};
  // By hand for row 0: logsumexp - z[label].
  double lse = 0;
  for (int k = 0; k < 4; ++k) lse += std::exp(z(0, k));
  const double row0 = std::log(lse) - z(0, 2);
  const double loss = nn::softmax_cross_entropy<double, 4>(z, labels, dz.data());
  double rows12 = 0;
  for (int i = 1; i < 3; ++i) {
    double s = 0;
    for (int k = 0; k < 4; ++k) s += std::exp(z(i, k));
    rows12 += std::log(s) - z(i, labels[i]);
  }
  EXPECT_NEAR(loss, (row0 + rows12) / 3, 1e-12);
  const std::vector<double> grad(dz.begin(), dz.end());
  expect_gradient("cross-entropy dz", span_of(z), grad,
                  [&] { return nn::softmax_cross_entropy<double, 4>(z, labels); }, 12);
  const std::vector<int> bad{2, 4, 0};
  auto loss_of = [&](const std::vector<int>& l) { return nn::softmax_cross_entropy<double, 4>(z, l); };
  EXPECT_THROW((void)loss_of(bad), std::invalid_argument);
  EXPECT_THROW((void)loss_of({1, 2}), std::invalid_argument);
}

TEST(Classifier, GradientsOfTheCrossEntropy) {
  using Net = metrics::Classifier<6, 4, 2, 3, double>;  // 6x4 -> 3x2 -> 2x1: the smallest that GroupNorm takes
  Net net;
  Generator g(4);
  net.init(g);
  // Non-trivial GroupNorm affine parameters, so that their gradients are tested too.
  randn(net.norm1.weight.value, 5, 0.3);
  net.norm1.weight.value += 1.0;
  randn(net.norm3.bias.value, 6, 0.3);
  Tensor<double, Net::Batch> x(3);
  Tensor<double, Net::Logits> dz(3);
  randn(x, 7);
  const std::vector<int> labels{1, 0, 2};
  auto run = [&](bool bwd) {
    net.forward(x);
    const double loss = nn::softmax_cross_entropy<double, 3>(net.logits(), labels, bwd ? dz.data() : nullptr);
    if (bwd) net.backward(x, dz);
    return loss;
  };
  expect_param_gradients("classifier", net, run, 6);
}

// Fashion-MNIST, a subset: the training images' first n_train and the test images' first n_test.
struct Fashion {
  static constexpr const char* dir = DIFFUSE_FASHION_MNIST_DIR;
  Tensor<float, Shape<dyn, 28, 28, 1>> train, test;
  std::vector<int> train_labels, test_labels;
  static bool present() { return std::filesystem::exists(std::string(dir) + "/t10k-images-idx3-ubyte.gz"); }
  Fashion(std::size_t n_train, std::size_t n_test) {
    const std::string d = dir;
    auto first = [](auto images, std::size_t n) {
      Tensor<float, Shape<dyn, 28, 28, 1>> t(n);
      std::copy_n(images.data(), t.size(), t.data());
      return t;
    };
    train = first(io::load_idx_images<28, 28>(d + "/train-images-idx3-ubyte.gz"), n_train);
    test = first(io::load_idx_images<28, 28>(d + "/t10k-images-idx3-ubyte.gz"), n_test);
    train_labels = io::load_idx_labels(d + "/train-labels-idx1-ubyte.gz");
    test_labels = io::load_idx_labels(d + "/t10k-labels-idx1-ubyte.gz");
    train_labels.resize(n_train);
    test_labels.resize(n_test);
  }
};

TEST(Classifier, LearnsFashionMnist) {
#ifndef DIFFUSE_TEST_OPTIMISED
  GTEST_SKIP() << "a training run of some seconds at -O3: left to optimised builds without sanitizers";
#endif
  if (!Fashion::present()) GTEST_SKIP() << "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)";
  Fashion data(6144, 2000);
  metrics::Classifier<28, 28, 1, 10> net;
  std::vector<double> losses;
  metrics::train_classifier(net, data.train.view(), data.train_labels, {.epochs = 2, .batch = 64},
                            [&](std::size_t, double loss) { losses.push_back(loss); });
  for (double l : losses) std::cout << "epoch loss " << l << "\n";
  ASSERT_EQ(losses.size(), 2u);
  EXPECT_LT(losses[1], losses[0]);
  const double acc = metrics::accuracy(net, data.test.view(), data.test_labels);
  std::cout << "test accuracy after 2 epochs of 6144 images: " << acc << "\n";
  EXPECT_GT(acc, 0.70);  // chance is 0.1

  // Features: 128 values per image, a covariance of full rank on 2000 images, and a
  // distance between two halves of the test set far below the one to the training
  // images flipped upside down (other images, same pixel statistics).
  auto half = [&](std::size_t start) {
    Tensor<float, Shape<dyn, 28, 28, 1>> t(1000);
    std::copy_n(data.test.data() + start * 784, t.size(), t.data());
    return t;
  };
  const auto a = metrics::feature_stats(net, half(0).view()), b = metrics::feature_stats(net, half(1000).view());
  Tensor<float, Shape<dyn, 28, 28, 1>> flipped(1000);
  for (std::size_t i = 0; i < 1000; ++i)
    for (std::size_t r = 0; r < 28; ++r)
      std::copy_n(data.train.data() + (i * 28 + 27 - r) * 28, 28, flipped.data() + (i * 28 + r) * 28);
  const auto f = metrics::feature_stats(net, flipped.view());
  EXPECT_EQ(a.count(), 1000u);
  const double same = metrics::frechet_distance(a, b), other = metrics::frechet_distance(a, f);
  std::cout << "Fréchet distance: test halves " << same << ", test vs flipped training images " << other << "\n";
  EXPECT_GT(same, 0.0);
  EXPECT_GT(other, 5 * same);
}

TEST(Classifier, SavesLoadsAndRefusesOtherNetworks) {
  const auto dir = std::filesystem::temp_directory_path() / "diffuse_test_classifier";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "c.safetensors").string();
  metrics::Classifier<16, 16, 3, 4> net, loaded;
  Generator g(1), h(2);
  net.init(g);
  loaded.init(h);
  metrics::save_classifier(net, path, {{"diffuse.test_accuracy", "0.5"}});
  const io::SafetensorsFile file(path);
  EXPECT_EQ(file.metadata().at("diffuse.test_accuracy"), "0.5");
  metrics::load_classifier(loaded, file);
  Tensor<float, Shape<dyn, 16, 16, 3>> x(2);
  Generator gx(3);
  fill_normal(x, gx);
  net.forward(x);
  std::vector<float> before(net.features().begin(), net.features().end());
  loaded.forward(x);
  EXPECT_EQ(before, std::vector<float>(loaded.features().begin(), loaded.features().end()));

  metrics::Classifier<16, 16, 1, 4> grey;
  metrics::Classifier<16, 16, 3, 10> ten;
  EXPECT_THROW(metrics::load_classifier(grey, file), io::SafetensorsError);
  EXPECT_THROW(metrics::load_classifier(ten, file), io::SafetensorsError);
  try {
    metrics::load_classifier(grey, file);
  } catch (const io::SafetensorsError& e) {
    EXPECT_NE(std::string(e.what()).find("16x16x3"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  io::SafetensorsWriter other;
  other.add<float>("x", {1}, std::vector<float>{1.f});
  other.write((dir / "other.safetensors").string());
  EXPECT_THROW(metrics::load_classifier(net, io::SafetensorsFile((dir / "other.safetensors").string())),
               io::SafetensorsError);
  std::filesystem::remove_all(dir);
}

}  // namespace
