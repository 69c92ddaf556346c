// Training checkpoints of edm-tiny: bit-identical resumption through a file, weights
// export, and every way a checkpoint can be wrong.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include <diffuse/diffusion/precond.hpp>
#include <diffuse/train/checkpoint.hpp>
#include <diffuse/unet.hpp>

#include "support/finite_difference.hpp"

namespace {

using namespace diffuse;
using Net = nn::UNet<nn::edm_tiny>;
using Model = diffusion::EDMPrecond<Net>;
using Images = train::TensorImages<28, 28, 1>;

Images images() {
  Tensor<float, Net::Batch> x(6);
  Generator g(4);
  fill_uniform(x, g, -1, 1);
  return Images(std::move(x));
}

// edm-tiny with 10 classes, and images labelled 0, 1, 2, ...
constexpr nn::UNetConfig tiny_classes = nn::with_classes(nn::edm_tiny, 10);
using CondModel = diffusion::EDMPrecond<nn::UNet<tiny_classes>>;

Images labelled_images() {
  Tensor<float, Net::Batch> x(6);
  Generator g(4);
  fill_uniform(x, g, -1, 1);
  return Images(std::move(x), {0, 1, 2, 3, 4, 5});
}

train::TrainerConfig config() {
  train::TrainerConfig c;
  c.batch = 2;
  c.seed = 5;
  c.optimizer.lr = 1e-3;
  return c;
}

template <class M>
std::vector<float> weights(M& m) {
  std::vector<float> w;
  m.for_each_param([&](std::string_view, std::span<float> v, std::span<float>) { w.insert(w.end(), v.begin(), v.end()); });
  return w;
}

// A folder of this process's files, removed when the process ends.
struct TempFolder {
  std::filesystem::path dir = std::filesystem::temp_directory_path() / ("diffuse-ckpt-" + std::to_string(::getpid()));
  TempFolder() { std::filesystem::create_directories(dir); }
  ~TempFolder() {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
};

std::string temp_path(const std::string& name) {
  static TempFolder folder;
  return (folder.dir / name).string();
}

TEST(Checkpoint, ResumingFromAFileIsBitIdentical) {
  const auto data = images();
  auto straight = std::make_unique<Model>();
  train::Trainer a(*straight, data, config());
  for (int s = 0; s < 5; ++s) a.step();

  const std::string path = temp_path("resume.safetensors");
  {
    auto first = std::make_unique<Model>();
    train::Trainer b(*first, data, config());
    for (int s = 0; s < 3; ++s) b.step();
    train::save_checkpoint(path, "edm-tiny", *first, b, {{"note", "test"}});
  }
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_EQ(train::read_checkpoint_info(path).metadata.at("note"), "test");
  auto resumed = std::make_unique<Model>(diffusion::Edm{}, 999);  // other initial weights
  train::Trainer c(*resumed, data, config());
  train::load_checkpoint(path, "edm-tiny", *resumed, c);
  EXPECT_EQ(c.steps_done(), 3u);
  for (int s = 0; s < 2; ++s) c.step();
  const auto want = weights(*straight), got = weights(*resumed);
  ASSERT_EQ(want.size(), got.size());
  EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0);
  std::vector<float> ema_a, ema_c;
  a.ema().for_each_param([&](std::string_view, std::span<float> v) { ema_a.insert(ema_a.end(), v.begin(), v.end()); });
  c.ema().for_each_param([&](std::string_view, std::span<float> v) { ema_c.insert(ema_c.end(), v.begin(), v.end()); });
  EXPECT_EQ(std::memcmp(ema_a.data(), ema_c.data(), ema_a.size() * sizeof(float)), 0);
}

// Power-function EMAs are part of the state: they resume bit-identically; a checkpoint
// written without them loads, and they start from its EMA weights.
TEST(Checkpoint, PowerEmasResumeAndOlderCheckpointsLoad) {
  const auto data = images();
  auto with_power = config();
  with_power.power_ema = {0.05, 0.10};
  auto averages = [](train::Trainer<Model, Images>& t, std::size_t k) {
    std::vector<float> v;
    t.power_ema().average(k).for_each_param([&](std::string_view, std::span<float> p) { v.insert(v.end(), p.begin(), p.end()); });
    return v;
  };
  auto straight = std::make_unique<Model>();
  train::Trainer a(*straight, data, with_power);
  for (int s = 0; s < 5; ++s) a.step();
  const std::string path = temp_path("resume-power.safetensors");
  {
    auto first = std::make_unique<Model>();
    train::Trainer b(*first, data, with_power);
    for (int s = 0; s < 3; ++s) b.step();
    train::save_checkpoint(path, "edm-tiny", *first, b);
  }
  const io::SafetensorsFile file(path);
  EXPECT_TRUE(file.contains("phema050.out_conv.weight"));
  EXPECT_TRUE(file.contains("phema100.out_conv.weight"));
  auto resumed = std::make_unique<Model>(diffusion::Edm{}, 999);
  train::Trainer c(*resumed, data, with_power);
  EXPECT_FALSE(train::load_checkpoint(path, "edm-tiny", *resumed, c).power_ema_from_ema);
  for (int s = 0; s < 2; ++s) c.step();
  for (std::size_t k = 0; k < 2; ++k) {
    const auto want = averages(a, k), got = averages(c, k);
    ASSERT_EQ(want.size(), got.size());
    EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0) << "average " << k;
  }
  EXPECT_NE(averages(a, 0), averages(a, 1));  // two widths, two averages

  const std::string old = temp_path("without-power.safetensors");
  {
    auto first = std::make_unique<Model>();
    train::Trainer b(*first, data, config());
    for (int s = 0; s < 3; ++s) b.step();
    train::save_checkpoint(old, "edm-tiny", *first, b);
  }
  auto later = std::make_unique<Model>();
  train::Trainer d(*later, data, with_power);
  EXPECT_TRUE(train::load_checkpoint(old, "edm-tiny", *later, d).power_ema_from_ema);
  std::vector<float> ema;
  d.ema().for_each_param([&](std::string_view, std::span<float> v) { ema.insert(ema.end(), v.begin(), v.end()); });
  EXPECT_EQ(averages(d, 0), ema);
  EXPECT_EQ(averages(d, 1), ema);
}

// The same through a class-conditional model: labels and their dropout are part of the
// run's random state (seed and step), so resuming still changes nothing.
TEST(Checkpoint, ConditionalRunResumesBitIdentically) {
  const auto data = labelled_images();
  auto cfg = config();
  cfg.label_dropout = 0.5;
  auto straight = std::make_unique<CondModel>();
  train::Trainer a(*straight, data, cfg);
  for (int s = 0; s < 4; ++s) a.step();
  const std::string path = temp_path("resume-cond.safetensors");
  {
    auto first = std::make_unique<CondModel>();
    train::Trainer b(*first, data, cfg);
    for (int s = 0; s < 2; ++s) b.step();
    train::save_checkpoint(path, "edm-tiny", *first, b);
  }
  auto resumed = std::make_unique<CondModel>(diffusion::Edm{}, 999);
  train::Trainer c(*resumed, data, cfg);
  train::load_checkpoint(path, "edm-tiny", *resumed, c);
  for (int s = 0; s < 2; ++s) c.step();
  const auto want = weights(*straight), got = weights(*resumed);
  ASSERT_EQ(want.size(), got.size());
  EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0);
}

TEST(Checkpoint, ExportedWeightsLoadIntoAFreshNetwork) {
  auto model = std::make_unique<Model>(diffusion::Edm{}, 3);
  const std::string path = temp_path("weights.safetensors");
  train::export_weights(path, model->net());
  auto other = std::make_unique<Model>(diffusion::Edm{}, 4);
  EXPECT_NE(weights(*model), weights(*other));
  nn::load_state_dict(other->net(), path);
  EXPECT_EQ(weights(*model), weights(*other));
}

template <class F>
void expect_error_naming(F&& f, const std::string& path, const std::string& text);

// A state dict missing its last tensor: the load fails naming it and changes nothing.
TEST(Checkpoint, StateDictLoadsAllOrNothing) {
  auto a = std::make_unique<Model>(diffusion::Edm{}, 3);
  io::SafetensorsWriter w;
  std::string last;
  a->net().for_each_param_ref([&](const nn::ParamRef<float>& p) { last = std::string(p.name); });
  a->net().for_each_param_ref([&](const nn::ParamRef<float>& p) {
    if (p.name != last) nn::write_param(w, p, std::span<const float>(p.value));
  });
  const std::string path = temp_path("partial.safetensors");
  w.write(path);
  auto b = std::make_unique<Model>(diffusion::Edm{}, 4);
  const auto before = weights(*b);
  expect_error_naming([&] { nn::load_state_dict(b->net(), path); }, path, last);
  EXPECT_EQ(weights(*b), before);
}

std::vector<float> ema_weights(train::Trainer<Model, Images>& t) {
  std::vector<float> w;
  t.ema().for_each_param([&](std::string_view, std::span<float> v) { w.insert(w.end(), v.begin(), v.end()); });
  return w;
}

TEST(Checkpoint, InfoOfCheckpointsAndPlainWeights) {
  const auto data = images();
  auto model = std::make_unique<Model>();
  train::Trainer t(*model, data, config());
  for (int s = 0; s < 2; ++s) t.step();
  const std::string path = temp_path("info.safetensors");
  train::save_checkpoint(path, "edm-tiny", *model, t, {{train::keys::label_dropout, "0.25"}});
  const train::CheckpointInfo info = train::read_checkpoint_info(path);
  EXPECT_TRUE(info.training_checkpoint);
  EXPECT_EQ(info.path, path);
  EXPECT_EQ(info.model, "edm-tiny");
  EXPECT_EQ(info.classes, 0u);
  EXPECT_EQ(info.steps, 2u);
  EXPECT_EQ(info.seed, 5u);
  EXPECT_EQ(info.batch, 2u);
  EXPECT_EQ(info.data_size, 6u);
  EXPECT_EQ(info.images_seen, t.counters().images_seen);
  EXPECT_EQ(info.number(train::keys::label_dropout), 0.25);
  EXPECT_FALSE(info.number(train::keys::lr).has_value());

  const std::string plain = temp_path("info-plain.safetensors");
  train::export_weights(plain, model->net());
  EXPECT_FALSE(train::read_checkpoint_info(plain).training_checkpoint);
  EXPECT_EQ(train::read_checkpoint_info(plain).classes, 0u);
  auto cond = std::make_unique<CondModel>();
  const std::string cond_plain = temp_path("info-cond-plain.safetensors");
  train::export_weights(cond_plain, cond->net());
  EXPECT_EQ(train::read_checkpoint_info(cond_plain).classes, 10u);  // from map_label.weight's shape

  expect_error_naming([&] { train::read_checkpoint_info(temp_path("none")); }, temp_path("none"), "no such file");
  const std::string folder = temp_path("a-folder");
  std::filesystem::create_directories(folder);
  expect_error_naming([&] { train::read_checkpoint_info(folder); }, folder, "is a folder");
}

TEST(Checkpoint, SamplingWeightsAreTheEmaOrTheRawWeights) {
  const auto data = images();
  auto model = std::make_unique<Model>();
  train::Trainer t(*model, data, config());
  for (int s = 0; s < 3; ++s) t.step();
  const std::string path = temp_path("sampling.safetensors");
  train::save_checkpoint(path, "edm-tiny", *model, t);
  ASSERT_NE(weights(*model), ema_weights(t));

  auto fresh = std::make_unique<Model>(diffusion::Edm{}, 17);
  const std::string what = train::load_sampling_weights(fresh->net(), path, "edm-tiny");
  EXPECT_EQ(weights(*fresh), ema_weights(t));
  EXPECT_NE(what.find("EMA weights"), std::string::npos) << what;
  EXPECT_NE(what.find("step 3"), std::string::npos) << what;
  train::load_sampling_weights(fresh->net(), path, "edm-tiny", /*use_ema=*/false);
  EXPECT_EQ(weights(*fresh), weights(*model));

  // Wrong configuration, or --no-ema on plain weights: an error, and the network unchanged.
  auto other = std::make_unique<Model>(diffusion::Edm{}, 18);
  const auto before = weights(*other);
  expect_error_naming([&] { train::load_sampling_weights(other->net(), path, "edm-mnist-small"); }, path,
                      "holds model 'edm-tiny', not 'edm-mnist-small'");
  const std::string plain = temp_path("sampling-plain.safetensors");
  train::export_weights(plain, model->net());
  // Weights that name their model are refused for another, as a checkpoint is.
  const std::string named = temp_path("sampling-named.safetensors");
  train::export_weights(named, model->net(), "edm-tiny");
  EXPECT_EQ(train::read_checkpoint_info(named).model, "edm-tiny");
  EXPECT_EQ(train::read_checkpoint_info(plain).model, "");
  expect_error_naming([&] { train::load_sampling_weights(other->net(), named, "edm-mnist-small"); }, named,
                      "holds model 'edm-tiny', not 'edm-mnist-small'");
  expect_error_naming([&] { train::load_sampling_weights(other->net(), plain, "edm-tiny", false); }, plain,
                      "holds plain weights");
  EXPECT_EQ(weights(*other), before);
  train::load_sampling_weights(other->net(), plain, "edm-tiny");
  EXPECT_EQ(weights(*other), weights(*model));
}

TEST(Checkpoint, EmaAppliedRestoresTheTrainingWeights) {
  const auto data = images();
  auto model = std::make_unique<Model>();
  train::Trainer t(*model, data, config());
  for (int s = 0; s < 2; ++s) t.step();
  const auto trained = weights(*model), averaged = ema_weights(t);
  ASSERT_NE(trained, averaged);
  {
    const optim::EmaApplied ema(t.ema(), *model);
    EXPECT_EQ(weights(*model), averaged);
  }
  EXPECT_EQ(weights(*model), trained);
  try {
    const optim::EmaApplied ema(t.ema(), *model);
    throw std::runtime_error("sampling failed");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(weights(*model), trained);
  EXPECT_EQ(ema_weights(t), averaged);
}

template <class F>
void expect_error_naming(F&& f, const std::string& path, const std::string& text) {
  try {
    f();
    ADD_FAILURE() << "no error (expected: " << text << ")";
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(text), std::string::npos) << msg;
  }
}

TEST(Checkpoint, WrongFilesAreRejectedWithoutHarm) {
  const auto data = images();
  auto model = std::make_unique<Model>();
  train::Trainer t(*model, data, config());
  t.step();
  const std::string good = temp_path("good.safetensors");
  train::save_checkpoint(good, "edm-tiny", *model, t);
  const auto before = weights(*model);

  // Another configuration's name.
  expect_error_naming([&] { train::load_checkpoint(good, "edm-mnist-small", *model, t); }, good,
                      "checkpoint of model 'edm-tiny', but this run uses 'edm-mnist-small'");
  // Plain weights are not a training checkpoint.
  const std::string plain = temp_path("plain.safetensors");
  train::export_weights(plain, model->net());
  expect_error_naming([&] { train::load_checkpoint(plain, "edm-tiny", *model, t); }, plain,
                      "not a diffuse training checkpoint");
  // Truncated.
  const std::string cut = temp_path("cut.safetensors");
  std::filesystem::copy_file(good, cut, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::resize_file(cut, std::filesystem::file_size(good) / 2);
  expect_error_naming([&] { train::load_checkpoint(cut, "edm-tiny", *model, t); }, cut, "truncated");
  // Another batch size or seed would not continue the same run.
  {
    auto cfg = config();
    cfg.batch = 3;
    train::Trainer other(*model, data, cfg);
    expect_error_naming([&] { train::load_checkpoint(good, "edm-tiny", *model, other); }, good,
                        "trained with batch 2 on 6 images; this one has batch 3 and 6 images");
    cfg = config();
    cfg.seed = 77;
    train::Trainer reseeded(*model, data, cfg);
    expect_error_naming([&] { train::load_checkpoint(good, "edm-tiny", *model, reseeded); }, good, "seed 5");
  }
  // A class-conditional model does not take an unconditional checkpoint, nor the reverse.
  {
    const auto labelled = labelled_images();
    auto cond = std::make_unique<CondModel>();
    train::Trainer tc(*cond, labelled, config());
    expect_error_naming([&] { train::load_checkpoint(good, "edm-tiny", *cond, tc); }, good,
                        "checkpoint of a model with no classes (unconditional), but this one has 10 classes");
    tc.step();
    const std::string cond_path = temp_path("cond.safetensors");
    train::save_checkpoint(cond_path, "edm-tiny", *cond, tc);
    EXPECT_EQ(train::read_checkpoint_info(cond_path).classes, 10u);
    expect_error_naming([&] { train::load_checkpoint(cond_path, "edm-tiny", *model, t); }, cond_path,
                        "checkpoint of a model with 10 classes (class-conditional), but this one has no classes");
  }
  // Metadata that is not what it should be: every counter a whole number, classes in range.
  {
    const std::string bad = temp_path("bad-metadata.safetensors");
    struct Case {
      const char *key, *value, *want;
    };
    const Case cases[] = {
        {train::keys::seed, "abc", "is not a whole number: 'abc'"},
        {train::keys::seed, "-1", "is not a whole number: '-1'"},  // not 2^64 - 1
        {train::keys::steps, " 5", "is not a whole number: ' 5'"},
        {train::keys::batch, "2e0", "is not a whole number: '2e0'"},
        {train::keys::images_seen, "99999999999999999999999", "is 99999999999999999999999, more than 18446744073709551615"},
        {train::keys::classes, "4611686018427387904", "is 4611686018427387904, more than 1000000"}};
    for (const auto& c : cases) {
      train::save_checkpoint(bad, "edm-tiny", *model, t, {{c.key, c.value}});
      const std::string want = std::string("metadata '") + c.key + "' " + c.want;
      expect_error_naming([&] { train::load_checkpoint(bad, "edm-tiny", *model, t); }, bad, want);
      expect_error_naming([&] { train::read_checkpoint_info(bad); }, bad, want);
    }
  }
  // Missing.
  expect_error_naming([&] { train::load_checkpoint(temp_path("none"), "edm-tiny", *model, t); }, temp_path("none"), "cannot open");
  EXPECT_EQ(weights(*model), before);

  // A failed write leaves the previous checkpoint as it was.
  const auto size = std::filesystem::file_size(good);
  std::filesystem::create_directories(good + ".tmp");  // the temporary name is taken by a folder
  EXPECT_ANY_THROW(train::save_checkpoint(good, "edm-tiny", *model, t));
  std::filesystem::remove_all(good + ".tmp");
  EXPECT_EQ(std::filesystem::file_size(good), size);
  EXPECT_NO_THROW(train::load_checkpoint(good, "edm-tiny", *model, t));
}

}  // namespace

namespace {

// The whole training objective of edm-tiny - preconditioning, network and EDM loss - in
// double precision against central finite differences, on the element with the largest
// gradient of every tensor and on a spread of others.
TEST(TrainingGradient, EdmTinyLossMatchesFiniteDifferencesInDouble) {
  using ModelD = diffusion::EDMPrecond<nn::UNet<nn::edm_tiny, double>>;
  using BatchD = ModelD::Batch;
  auto model = std::make_unique<ModelD>(diffusion::Edm{}, 21);
  Tensor<double, BatchD> y(2), noise(2);
  Generator g(8);
  fill_uniform(y, g, -1, 1);
  fill_normal(noise, g);
  const std::vector<double> sigma = {0.4, 2.5};
  auto loss = [&] { return model->loss(TensorView<const double, BatchD>(y.view()), sigma, TensorView<const double, BatchD>(noise.view())); };
  model->zero_grad();
  const double at = loss();
  model->loss_backward();
  int checked = 0;
  model->for_each_param([&](std::string_view name, std::span<double> v, std::span<double> grad) {
    std::size_t k = 0;
    for (std::size_t i = 1; i < grad.size(); ++i)
      if (std::abs(grad[i]) > std::abs(grad[k])) k = i;
    for (std::size_t e : {k, grad.size() / 3}) {
      const double fd = diffuse::testing::central_difference(v[e], loss, 1e-5);
      EXPECT_NEAR(fd, grad[e], 1e-6 * (std::abs(grad[e]) + 1e-3 * std::abs(at))) << name << "[" << e << "]";
      ++checked;
    }
  });
  EXPECT_EQ(checked, 2 * 128);  // two elements of each of edm-tiny's 128 tensors
}

}  // namespace
