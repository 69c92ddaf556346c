// The training loop on a small affine network: learning, deterministic shuffles,
// bit-identical resumption, thread-count independence and the NaN guard.
#include <gtest/gtest.h>

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstring>
#include <thread>
#include <limits>
#include <map>
#include <vector>

#include <diffuse/diffusion/precond.hpp>
#include <diffuse/tensor.hpp>
#include <diffuse/train/evaluate.hpp>
#include <diffuse/train/trainer.hpp>

namespace {

using namespace diffuse;
using Batch = Shape<dyn, 4, 4, 1>;

// F(x, c_noise) = a x + b + c c_noise, one scalar parameter each.
struct AffineNet {
  using Batch = ::Batch;
  float a = 0.1f, b = 0.f, c = 0.f, ga = 0, gb = 0, gc = 0;
  Tensor<float, Batch> x;
  std::vector<float> cn;

  void forward(TensorView<const float, Batch> in, std::span<const float> c_noise, TensorView<float, Batch> out) {
    x = in;
    cn.assign(c_noise.begin(), c_noise.end());
    for (std::size_t i = 0; i < in.batch(); ++i) out.item(i) = a * in.item(i) + (b + c * cn[i]);
  }
  void backward(TensorView<const float, Batch> dout) {
    for (std::size_t i = 0; i < dout.batch(); ++i) {
      const float s = sum(dout.item(i));
      ga += sum(dout.item(i) * x.item(i));
      gb += s;
      gc += s * cn[i];
    }
  }
  void zero_grad() { ga = gb = gc = 0; }
  template <class F>
  void for_each_param(F&& f) {
    f(std::string_view("a"), std::span<float>(&a, 1), std::span<float>(&ga, 1));
    f(std::string_view("b"), std::span<float>(&b, 1), std::span<float>(&gb, 1));
    f(std::string_view("c"), std::span<float>(&c, 1), std::span<float>(&gc, 1));
  }
};

using Model = diffusion::EDMPrecond<AffineNet>;
using Images = train::TensorImages<4, 4, 1>;

Images make_images(std::size_t n, std::uint64_t seed = 3) {
  Tensor<float, Batch> x(n);
  Generator g(seed);
  fill_uniform(x, g, -1, 1);
  return Images(std::move(x));
}

train::TrainerConfig config(std::size_t batch = 4) {
  train::TrainerConfig c;
  c.batch = batch;
  c.seed = 11;
  c.optimizer.lr = 0.01;
  c.ema.half_life_images = 20;
  return c;
}

// Every float of the training state, by name.
template <class T>
std::map<std::string, std::vector<float>> snapshot(Model& model, T& trainer) {
  std::map<std::string, std::vector<float>> s;
  model.for_each_param([&](std::string_view n, std::span<float> v, std::span<float>) {
    s[std::string(n)] = {v.begin(), v.end()};
  });
  trainer.for_each_state([&](std::string_view n, std::span<float> v) { s[std::string(n)] = {v.begin(), v.end()}; });
  return s;
}

TEST(Trainer, LossFallsOnAFixedSet) {
  // Start far from the best affine denoiser (a large offset), so that learning shows
  // above the irreducible loss of a network this simple.
  const auto data = make_images(32);
  Model model;
  model.net().a = 2.f;
  model.net().b = 2.f;
  train::Trainer trainer(model, data, config(8));
  double early = 0, late = 0;
  for (int s = 0; s < 400; ++s) {
    const auto r = trainer.step();
    ASSERT_FALSE(r.skipped);
    if (s < 50) early += r.loss;
    if (s >= 350) late += r.loss;
  }
  EXPECT_LT(late, 0.5 * early);
  EXPECT_LT(std::abs(model.net().b), 0.5f);
  EXPECT_EQ(trainer.steps_done(), 400u);
  EXPECT_EQ(trainer.optimizer().step_count(), 400u);
}

// Counts how often each image is loaded.
struct CountingImages {
  using Batch = ::Batch;
  Images inner = make_images(10);
  mutable std::vector<int> loads = std::vector<int>(10, 0);
  std::size_t size() const { return inner.size(); }
  void load(std::size_t i, TensorView<float, Shape<4, 4, 1>> out) const {
    ++loads[i];
    inner.load(i, out);
  }
  int label(std::size_t) const { return -1; }
};

TEST(Trainer, EachEpochVisitsEveryImageOnce) {
  CountingImages data;
  Model model;
  train::Trainer trainer(model, data, config(5));
  EXPECT_EQ(trainer.batches_per_epoch(), 2u);
  trainer.step();
  trainer.step();
  for (int c : data.loads) EXPECT_EQ(c, 1);
  trainer.step();
  trainer.step();
  for (int c : data.loads) EXPECT_EQ(c, 2);
}

TEST(Trainer, ResumingContinuesBitIdentically) {  // also with --xflip, whose draws follow (seed, step)
  std::map<std::string, std::vector<float>> plain;
  for (const bool xflip : {false, true}) {
    SCOPED_TRACE(xflip ? "xflip" : "no xflip");
    auto cfg = config();
    cfg.xflip = xflip;
    const auto data = make_images(12);
    Model straight;
    train::Trainer a(straight, data, cfg);
    for (int s = 0; s < 10; ++s) a.step();

    Model first;
    train::Trainer b(first, data, cfg);
    for (int s = 0; s < 4; ++s) b.step();  // 4 steps: epoch 1 has begun
    auto saved = snapshot(first, b);
    const auto counters = b.counters();

    Model resumed;
    train::Trainer c(resumed, data, cfg);
    c.set_counters(counters);
    auto restore = [&](std::string_view n, std::span<float> v) {
      const auto& src = saved.at(std::string(n));
      ASSERT_EQ(src.size(), v.size());
      std::copy(src.begin(), src.end(), v.begin());
    };
    resumed.for_each_param([&](std::string_view n, std::span<float> v, std::span<float>) { restore(n, v); });
    c.for_each_state(restore);
    for (int s = 0; s < 6; ++s) c.step();

    const auto want = snapshot(straight, a), got = snapshot(resumed, c);
    ASSERT_EQ(want.size(), got.size());
    for (const auto& [name, values] : want)
      EXPECT_EQ(std::memcmp(values.data(), got.at(name).data(), values.size() * sizeof(float)), 0) << name;
    EXPECT_EQ(c.steps_done(), 10u);
    if (!xflip) plain = want;
    else EXPECT_NE(plain.at("a"), want.at("a")) << "--xflip showed the same images";
  }
}

TEST(Trainer, ThreadCountDoesNotChangeTheRun) {
  const auto data = make_images(64);
  std::map<std::string, std::vector<float>> result[2];
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    Model model;
    train::Trainer t(model, data, config(32));
    for (int s = 0; s < 5; ++s) t.step();
    result[threads - 1] = snapshot(model, t);
  }
  set_num_threads(2);
  for (const auto& [name, values] : result[0])
    EXPECT_EQ(std::memcmp(values.data(), result[1].at(name).data(), values.size() * sizeof(float)), 0) << name;
}

TEST(Trainer, NonFiniteStepsChangeNothingAndStopTheRun) {
  Tensor<float, Batch> x(4);
  x = std::numeric_limits<float>::quiet_NaN();
  const Images data(std::move(x));
  Model model;
  auto cfg = config(2);
  cfg.max_bad_steps = 3;
  train::Trainer trainer(model, data, cfg);
  const auto before = snapshot(model, trainer);
  EXPECT_TRUE(trainer.step().skipped);
  EXPECT_TRUE(trainer.step().skipped);
  EXPECT_EQ(snapshot(model, trainer), before);
  EXPECT_EQ(trainer.optimizer().step_count(), 0u);
  try {
    trainer.step();
    ADD_FAILURE() << "no TrainingError after 3 non-finite steps";
  } catch (const train::TrainingError& e) {
    EXPECT_NE(std::string(e.what()).find("not finite (NaN or Inf) for 3 steps in a row"), std::string::npos) << e.what();
  }
}

TEST(Trainer, ABadBatchIsSkippedAndTrainingGoesOn) {
  Tensor<float, Batch> x(4);
  x = 0.5f;
  x(2, 1, 1, 0) = std::numeric_limits<float>::infinity();
  const Images data(std::move(x));
  Model model;
  train::Trainer trainer(model, data, config(2));
  int skipped = 0, done = 0;
  for (int s = 0; s < 20; ++s) (trainer.step().skipped ? skipped : done)++;
  EXPECT_GT(skipped, 0);
  EXPECT_GT(done, 0);
  EXPECT_TRUE(std::isfinite(model.net().a));
}

TEST(Trainer, RejectsImpossibleSettings) {
  const auto data = make_images(3);
  Model model;
  EXPECT_THROW(train::Trainer(model, data, config(0)), std::invalid_argument);
  EXPECT_THROW(train::Trainer(model, data, config(4)), std::invalid_argument);
  train::Trainer t(model, data, config(2));
  auto c = t.counters();
  c.seed = 99;
  EXPECT_THROW(t.set_counters(c), std::invalid_argument);
}

}  // namespace

namespace {

TEST(Evaluate, IsDeterministicAndFollowsTheModel) {
  const auto data = make_images(10);
  Model model;
  model.net().b = 1.f;
  train::EvalConfig cfg;
  cfg.batch = 4;  // 10 images: batches of 4, 4 and 2
  const auto per = train::evaluate_loss_per_sigma(model, data, cfg);
  ASSERT_EQ(per.size(), cfg.sigmas.size());
  EXPECT_EQ(train::evaluate_loss_per_sigma(model, data, cfg), per);
  // Level 0 by hand: the same noise (Generator(seed, image, level)) through Precond::loss.
  Tensor<float, Batch> y(10), noise(10);
  std::vector<float> sigma(10, static_cast<float>(cfg.sigmas[0]));
  for (std::size_t i = 0; i < 10; ++i) {
    data.load(i, y.item(i));
    Generator g(cfg.seed, i, 0);
    fill_normal(noise.item(i), g);
  }
  const double direct = model.loss(y.view(), sigma, noise.view());
  EXPECT_NEAR(per[0], direct, 1e-5 * direct);
  // A better offset gives a lower number.
  model.net().b = 0.f;
  EXPECT_LT(train::evaluate_loss(model, data, cfg), [&] {
    double s = 0;
    for (double v : per) s += v;
    return s / per.size();
  }());
}

}  // namespace

// ---- data parallelism -------------------------------------------------------------------

TEST(DataParallel, BatchSharesCoverTheBatchEvenly) {
  for (std::size_t ranks : {1u, 2u, 3u, 7u})
    for (std::size_t batch : {7u, 8u, 128u}) {
      std::size_t next = 0;
      for (std::size_t r = 0; r < ranks; ++r) {
        const train::BatchShare s = train::batch_share(batch, r, ranks);
        EXPECT_EQ(s.begin, next);
        EXPECT_GE(s.size(), batch / ranks);
        EXPECT_LE(s.size(), batch / ranks + 1);
        next = s.end;
      }
      EXPECT_EQ(next, batch);
    }
  EXPECT_THROW(train::batch_share(3, 0, 4), std::invalid_argument);  // a process without an image
  EXPECT_THROW(train::batch_share(8, 2, 2), std::invalid_argument);
}

// The processes of a data-parallel run as threads of this process: sums in rank order.
class ThreadCommunicator final : public train::Communicator {
 public:
  struct Shared {
    explicit Shared(std::size_t n) : barrier(static_cast<std::ptrdiff_t>(n)), floats(n), doubles(n) {}
    std::barrier<> barrier;
    std::vector<std::vector<float>> floats;
    std::vector<std::vector<double>> doubles;
    std::vector<std::uint64_t> values = std::vector<std::uint64_t>(floats.size());
  };
  ThreadCommunicator(Shared& s, std::size_t rank) : s_(s), rank_(rank) {}
  std::size_t rank() const override { return rank_; }
  std::size_t size() const override { return s_.floats.size(); }
  void sum(std::span<float> v) override { all_sum(s_.floats, v); }
  void sum(std::span<double> v) override { all_sum(s_.doubles, v); }
  void broadcast(std::span<double> v) override {
    s_.doubles[rank_].assign(v.begin(), v.end());
    s_.barrier.arrive_and_wait();
    std::copy(s_.doubles[0].begin(), s_.doubles[0].end(), v.begin());
    s_.barrier.arrive_and_wait();
  }
  bool same_everywhere(std::uint64_t value) override {
    s_.values[rank_] = value;
    s_.barrier.arrive_and_wait();
    const bool same = std::all_of(s_.values.begin(), s_.values.end(), [&](std::uint64_t x) { return x == value; });
    s_.barrier.arrive_and_wait();
    return same;
  }

 private:
  template <class T>
  void all_sum(std::vector<std::vector<T>>& slots, std::span<T> v) {
    slots[rank_].assign(v.begin(), v.end());
    s_.barrier.arrive_and_wait();
    for (std::size_t k = 0; k < v.size(); ++k) {
      T total = 0;
      for (const auto& slot : slots) total += slot[k];
      v[k] = total;
    }
    s_.barrier.arrive_and_wait();
  }
  Shared& s_;
  std::size_t rank_;
};

// Three processes sharing batches of 7 (2 + 2 + 3 images; --xflip, whose draws follow the
// slot) train as one process does: the same losses and weights up to float rounding, and
// the same weights on every process. One image is NaN: the steps that draw it are skipped
// by every process, as by one.
TEST(DataParallel, SharesOfEveryBatchTrainAsOneProcess) {
  Tensor<float, Batch> images(21);
  Generator gen(3);
  fill_uniform(images, gen, -1, 1);
  images.item(5).data()[0] = std::numeric_limits<float>::quiet_NaN();
  const Images data(std::move(images));
  auto cfg = config(7);
  cfg.xflip = true;
  cfg.max_bad_steps = 100;
  constexpr int steps = 12;
  Model single;
  train::Trainer one(single, data, cfg);
  std::vector<double> losses;
  std::vector<bool> skipped;
  for (int s = 0; s < steps; ++s) {
    const auto r = one.step();
    losses.push_back(r.loss);
    skipped.push_back(r.skipped);
  }
  ASSERT_GT(std::count(skipped.begin(), skipped.end(), true), 0);  // the NaN image was drawn
  ASSERT_LT(std::count(skipped.begin(), skipped.end(), true), steps);
  const auto want = snapshot(single, one);

  constexpr std::size_t ranks = 3;
  ThreadCommunicator::Shared shared(ranks);
  std::vector<std::map<std::string, std::vector<float>>> got(ranks);
  std::vector<std::vector<double>> got_losses(ranks);
  std::vector<std::vector<bool>> got_skipped(ranks);
  std::vector<std::thread> threads;
  for (std::size_t r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      set_num_threads(1);
      ThreadCommunicator comm(shared, r);
      auto c = cfg;
      c.communicator = &comm;
      Model m;
      train::Trainer t(m, data, c);
      EXPECT_EQ(t.share().size(), r == 2 ? 3u : 2u);
      for (int s = 0; s < steps; ++s) {
        const auto rep = t.step();
        got_losses[r].push_back(rep.loss);
        got_skipped[r].push_back(rep.skipped);
      }
      got[r] = snapshot(m, t);
    });
  for (auto& t : threads) t.join();
  for (std::size_t r = 0; r < ranks; ++r) {
    EXPECT_EQ(got[r], got[0]) << "process " << r << " has other weights than process 0";
    EXPECT_EQ(got_skipped[r], skipped) << "process " << r;
    for (int s = 0; s < steps; ++s) {
      if (!skipped[s]) {
        EXPECT_NEAR(got_losses[r][s], losses[s], 1e-6 * std::abs(losses[s])) << s;
      }
    }
  }
  for (const auto& [name, v] : want)
    for (std::size_t k = 0; k < v.size(); ++k)
      EXPECT_NEAR(got[0].at(name)[k], v[k], 1e-5 * std::max(1.f, std::abs(v[k]))) << name;
}
