// Gradient checks of every layer of diffuse::nn in double precision (central finite
// differences, see gradcheck.hpp), plus the layers' value-level contracts: PyTorch
// initialisation bounds, the sinusoidal embedding's formula, concatenation order and
// the beta (store or accumulate) convention of input gradients.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "gradcheck.hpp"

namespace {

using namespace diffuse;
using namespace diffuse::nn_test;
using diffuse::nn::ParamName;

constexpr std::size_t N = 2;

// Randomises every parameter (GroupNorm's 1 / 0 defaults would hide errors).
template <class Layer>
void randomize(Layer& layer, std::uint64_t seed) {
  Generator g(seed);
  nn::for_each_param_of(layer, [&](std::string_view, std::span<double> v, std::span<double>) {
    Tensor<double, Shape<dyn>> t(v.size());
    fill_normal(t, g, 0.0, 0.5);
    std::copy(t.begin(), t.end(), v.begin());
  });
}

// A layer y = f(x) with forward(x, y) and backward(x, dy, dx, beta): parameters, input,
// and beta = 1 accumulating into dx.
template <class L>
void check_simple_layer(const char* what, L& layer) {
  Tensor<double, typename L::In> x(N), dx(N);
  Tensor<double, typename L::Out> y(N), w(N);
  randn(x, 2);
  randn(w, 3);
  auto run = [&](bool bwd) {
    layer.forward(x, y);
    if (bwd) layer.backward(x, w, dx);
    return dot(y, w);
  };
  expect_param_gradients(what, layer, run);
  run(true);
  const std::vector<double> grad(dx.begin(), dx.end());
  expect_gradient(std::string(what) + " dx", span_of(x), grad, [&] { return run(false); });
  // beta = 1 adds to what dx holds.
  dx = 0.5;
  layer.backward(x, w, dx, 1.0);
  for (std::size_t i = 0; i < grad.size(); ++i) ASSERT_NEAR(dx.data()[i], grad[i] + 0.5, 1e-12) << what;
}

TEST(NnConv2d, Gradients) {
  {
    nn::Conv2d<double, 3, 4, 3, 5, 5, 1, 1> c;
    Generator g(1);
    c.init(g);
    check_simple_layer("conv3x3", c);
  }
  {
    nn::Conv2d<double, 3, 4, 3, 6, 5, 2, 1> c;  // stride 2, non-square
    Generator g(2);
    c.init(g);
    check_simple_layer("conv3x3/2", c);
  }
  {
    nn::Conv1x1<double, 3, 5, 4, 4> c;
    Generator g(3);
    c.init(g);
    check_simple_layer("conv1x1", c);
  }
  {
    nn::Conv2d<double, 2, 3, 5, 6, 6, 1, 2> c;
    Generator g(4);
    c.init(g);
    check_simple_layer("conv5x5", c);
  }
}

TEST(NnConv2d, PyTorchDefaultInitBounds) {
  nn::Conv2d<float, 16, 32, 3, 4, 4> c;
  Generator g(5);
  c.init(g);
  const double bound = 1.0 / std::sqrt(16.0 * 9.0);
  double m = 0;
  for (float v : c.weight.value) m = std::max(m, double(std::abs(v)));
  EXPECT_LE(m, bound);
  EXPECT_GT(m, 0.9 * bound);  // uniform over the whole interval
  for (float v : c.bias.value) EXPECT_LE(std::abs(v), bound);
  ParamName name;
  std::vector<std::string> names;
  std::vector<std::array<std::size_t, 4>> shapes;
  auto visit = [&](const nn::ParamRef<float>& r) {
    names.emplace_back(r.name);
    shapes.push_back(r.torch_shape);
  };
  c.visit_params(visit, name);
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0], "weight");
  EXPECT_EQ(names[1], "bias");
  EXPECT_EQ(shapes[0], (std::array<std::size_t, 4>{32, 16, 3, 3}));  // OIHW
}

TEST(NnLinear, Gradients) {
  nn::Linear<double, 5, 7> lin;
  Generator g(6);
  lin.init(g);
  Tensor<double, Shape<dyn, 5>> x(3), dx(3);
  Tensor<double, Shape<dyn, 7>> y(3), w(3);
  randn(x, 7);
  randn(w, 8);
  auto run = [&](bool bwd) {
    lin.forward(x, y);
    if (bwd) lin.backward(x, w, dx);
    return dot(y, w);
  };
  expect_param_gradients("linear", lin, run);
  run(true);
  const std::vector<double> grad(dx.begin(), dx.end());
  expect_gradient("linear dx", span_of(x), grad, [&] { return run(false); });
}

template <class GN>
void check_group_norm(const char* what, bool adaptive) {
  GN gn;
  randomize(gn, 9);
  using Act = typename GN::Act;
  Tensor<double, Act> x(N), dx(N), y(N), w(N);
  Tensor<double, typename GN::Mod> ss(N), dss(N);
  randn(x, 10, 2.0);
  x += 1.5;  // a non-zero mean
  randn(w, 11);
  randn(ss, 12, 0.5);
  std::vector<double> ws(N * GN::workspace_per_image);
  auto run = [&](bool bwd) {
    if constexpr (GN::Mod::extents[1] > 0) {
      if (adaptive) {
        if constexpr (requires { gn.forward(x, ss, y); }) {
          gn.forward(x, ss, y);
          if (bwd) gn.backward(x, ss, w, dx, 0.0, dss, ws.data());
        }
      } else {
        if constexpr (requires { gn.forward(x, y); }) {
          gn.forward(x, y);
          if (bwd) gn.backward(x, w, dx, 0.0, ws.data());
        }
      }
    }
    return dot(y, w);
  };
  expect_param_gradients(what, gn, run);
  run(true);
  const std::vector<double> gx(dx.begin(), dx.end()), gss(dss.begin(), dss.end());
  expect_gradient(std::string(what) + " dx", span_of(x), gx, [&] { return run(false); }, 40);
  if (adaptive) expect_gradient(std::string(what) + " d(scale|shift)", span_of(ss), gss, [&] { return run(false); }, 40);
}

TEST(NnGroupNorm, Gradients) {
  check_group_norm<nn::GroupNorm<double, 3, 4, 6, 3>>("groupnorm", false);
  check_group_norm<nn::GroupNormSiLU<double, 3, 4, 8, 2>>("groupnorm+silu", false);
  check_group_norm<nn::AdaGroupNormSiLU<double, 3, 3, 8, 4>>("adaptive groupnorm+silu", true);
  check_group_norm<nn::GroupNorm<double, 2, 2, 4, 1>>("groupnorm G=1", false);
}

TEST(NnGroupNorm, NormalisesEachGroup) {
  // Defaults (weight 1, bias 0): every group of every image has mean 0 and variance 1.
  nn::GroupNorm<float, 5, 5, 32, 8> gn;
  Tensor<float, Shape<dyn, 5, 5, 32>> x(3), y(3);
  randn(x, 13, 3.0);
  x += 2.f;
  gn.forward(x, y);
  for (std::size_t n = 0; n < 3; ++n)
    for (std::size_t g = 0; g < 8; ++g) {
      double s = 0, s2 = 0;
      for (std::size_t p = 0; p < 25; ++p)
        for (std::size_t c = 4 * g; c < 4 * g + 4; ++c) {
          const double v = y.data()[(n * 25 + p) * 32 + c];
          s += v;
          s2 += v * v;
        }
      EXPECT_NEAR(s / 100, 0.0, 1e-5);
      EXPECT_NEAR(s2 / 100, 1.0, 1e-3);  // var/(var + eps) with eps = 1e-5
    }
}

TEST(NnSiLU, Gradient) {
  using S = Shape<dyn, 3, 5>;
  Tensor<double, S> x(N), y(N), w(N), dx(N);
  randn(x, 14, 3.0);
  randn(w, 15);
  auto run = [&](bool bwd) {
    nn::SiLU<double, S>::forward(x, y);
    if (bwd) nn::SiLU<double, S>::backward(x, w, dx);
    return dot(y, w);
  };
  run(true);
  const std::vector<double> g(dx.begin(), dx.end());
  expect_gradient("silu dx", span_of(x), g, [&] { return run(false); }, 40);
}

TEST(NnResample, Gradients) {
  {
    nn::Downsample<double, 5, 5, 3> d;  // 5 -> 3
    static_assert(decltype(d)::Out::extents[1] == 3);
    Generator g(16);
    d.init(g);
    Tensor<double, Shape<dyn, 5, 5, 3>> x(N), dx(N);
    Tensor<double, Shape<dyn, 3, 3, 3>> y(N), w(N);
    randn(x, 17);
    randn(w, 18);
    auto run = [&](bool bwd) {
      d.forward(x, y);
      if (bwd) d.backward(x, w, dx, 0.0);
      return dot(y, w);
    };
    expect_param_gradients("downsample", d, run);
    run(true);
    const std::vector<double> gx(dx.begin(), dx.end());
    expect_gradient("downsample dx", span_of(x), gx, [&] { return run(false); });
  }
  {
    nn::UpsampleConv<double, 3, 2, 3> u;
    Generator g(19);
    u.init(g);
    Tensor<double, Shape<dyn, 3, 2, 3>> x(N), dx(N);
    Tensor<double, Shape<dyn, 6, 4, 3>> y(N), w(N);
    std::vector<double> ws(N * u.workspace_per_image);
    randn(x, 20);
    randn(w, 21);
    auto run = [&](bool bwd) {
      u.forward(x, y, ws.data());
      std::fill(ws.begin(), ws.end(), std::nan(""));  // backward must not rely on forward's scratch
      if (bwd) u.backward(x, w, dx, 0.0, ws.data());
      return dot(y, w);
    };
    expect_param_gradients("upsample+conv", u, run);
    run(true);
    const std::vector<double> gx(dx.begin(), dx.end());
    expect_gradient("upsample+conv dx", span_of(x), gx, [&] { return run(false); });
    // nearest: every 2x2 block repeats its source pixel
    Tensor<double, Shape<dyn, 6, 4, 3>> up(N);
    nn::Upsample<double, 3, 2, 3>::forward(x, up);
    EXPECT_EQ(up(1, 5, 3, 2), x(1, 2, 1, 2));
    EXPECT_EQ(up(0, 2, 1, 1), x(0, 1, 0, 1));
  }
}

template <class A>
void check_attention(const char* what) {
  A at;
  randomize(at, 22);
  using Act = typename A::Act;
  Tensor<double, Act> x(N), dx(N), y(N), w(N);
  std::vector<double> ws(N * A::workspace_per_image);
  randn(x, 23);
  randn(w, 24);
  auto run = [&](bool bwd) {
    at.forward(x, y);
    if (bwd) at.backward(x, w, dx, 0.0, ws.data());
    return dot(y, w);
  };
  expect_param_gradients(what, at, run);
  run(true);
  const std::vector<double> gx(dx.begin(), dx.end());
  expect_gradient(std::string(what) + " dx", span_of(x), gx, [&] { return run(false); }, 40);
}

TEST(NnAttention, Gradients) {
  check_attention<nn::Attention<double, 3, 3, 4, 1, 2>>("attention 1 head");
  check_attention<nn::Attention<double, 2, 3, 6, 2, 3>>("attention 2 heads");
}

TEST(NnAttention, UniformScoresAverageValues) {
  // With q = k = 0 every position attends equally: a = mean of v over positions.
  nn::Attention<double, 2, 2, 4, 1, 2> at;
  Generator g(25);
  at.init(g);
  for (std::size_t i = 0; i < 4 * 12; ++i) at.qkv.weight.value.data()[i] = 0;  // all rows
  for (std::size_t ci = 0; ci < 4; ++ci)
    for (std::size_t co = 0; co < 8; ++co) at.qkv.weight.value.data()[ci * 12 + co] = 0;  // q, k columns
  for (std::size_t co = 0; co < 8; ++co) at.qkv.bias.value.data()[co] = 0;
  Tensor<double, Shape<dyn, 2, 2, 4>> x(1), y(1);
  randn(x, 26);
  at.forward(x, y);
  for (std::size_t p = 0; p < 4; ++p)
    for (std::size_t j = 0; j < 4; ++j) EXPECT_NEAR(at.attn.data()[p * 4 + j], 0.25, 1e-15);
}

template <class RB>
void check_res_block(const char* what) {
  RB rb;
  Generator g(27);
  rb.init(g);
  randomize(rb, 28);
  constexpr std::size_t E = RB::EmbShape::extents[1];
  Tensor<double, typename RB::In> x(N), dx(N);
  Tensor<double, typename RB::Out> y(N), w(N);
  Tensor<double, Shape<dyn, E>> e(N), de(N);
  std::vector<double> ws(N * RB::workspace_per_image), fws(N * RB::forward_workspace_per_image);
  randn(x, 29);
  randn(e, 30);
  randn(w, 31);
  auto run = [&](bool bwd) {
    rb.forward(x, e, y, fws.data());
    if (bwd) {
      de = 0.0;
      rb.backward(x, e, w, dx, 0.0, de, ws.data());
    }
    return dot(y, w);
  };
  expect_param_gradients(what, rb, run, 12);
  run(true);
  const std::vector<double> gx(dx.begin(), dx.end()), ge(de.begin(), de.end());
  expect_gradient(std::string(what) + " dx", span_of(x), gx, [&] { return run(false); }, 32);
  expect_gradient(std::string(what) + " de", span_of(e), ge, [&] { return run(false); }, 32);
  // beta = 1 accumulates into dx; de always accumulates.
  dx = 0.25;
  rb.forward(x, e, y, fws.data());  // the finite differences left perturbed activations behind
  rb.backward(x, e, w, dx, 1.0, de, ws.data());
  for (std::size_t i = 0; i < gx.size(); ++i) ASSERT_NEAR(dx.data()[i], gx[i] + 0.25, 1e-12);
  for (std::size_t i = 0; i < ge.size(); ++i) ASSERT_NEAR(de.data()[i], 2 * ge[i], 1e-12);
}

TEST(NnResBlock, Gradients) {
  check_res_block<nn::ResBlock<double, 4, 4, 4, 6, 5, 2, 3, 2>>("resblock 4->6 + attention");
  check_res_block<nn::ResBlock<double, 3, 5, 6, 6, 4, 3, 2, 0>>("resblock 6->6");
}

TEST(NnResBlock, ParameterNamesInStateDictOrder) {
  nn::ResBlock<float, 4, 4, 4, 8, 16, 2, 2, 1> rb;
  std::vector<std::string> names;
  rb.for_each_param([&](std::string_view n, std::span<float> v, std::span<float> g) {
    EXPECT_EQ(v.size(), g.size());
    names.emplace_back(n);
  });
  const std::vector<std::string> want = {
      "norm0.weight", "norm0.bias", "conv0.weight", "conv0.bias", "affine.weight", "affine.bias",
      "norm1.weight", "norm1.bias", "conv1.weight", "conv1.bias", "skip.weight", "skip.bias",
      "attn.norm.weight", "attn.norm.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
      "attn.proj.bias"};
  EXPECT_EQ(names, want);
  EXPECT_EQ(nn::count_params(rb), decltype(rb)::param_count);
}

TEST(NnEmbedding, SinusoidalFormula) {
  Tensor<double, Shape<dyn, 8>> out(2);
  std::vector<double> c = {0.3, -1.7};
  nn::sinusoidal_embedding<double, 8>(c, out);
  for (std::size_t n = 0; n < 2; ++n)
    for (std::size_t i = 0; i < 4; ++i) {
      const double f = std::pow(1.0 / 10000.0, double(i) / 4.0);
      EXPECT_NEAR(out(n, i), std::cos(c[n] * f), 1e-15);
      EXPECT_NEAR(out(n, 4 + i), std::sin(c[n] * f), 1e-15);
    }
}

TEST(NnEmbedding, Gradients) {
  nn::NoiseEmbedding<double, 6, 10> emb;
  Generator g(32);
  emb.init(g);
  std::vector<double> c = {0.4, -0.9, 1.3};
  Tensor<double, Shape<dyn, 10>> w(3);
  randn(w, 33);
  std::vector<double> ws(3 * emb.workspace_per_image);
  auto run = [&](bool bwd) {
    emb.forward(c);
    if (bwd) emb.backward(w, ws.data());
    return dot(emb.out, w);
  };
  expect_param_gradients("embedding", emb, run);
}

TEST(NnConcat, ValuesAndBackward) {
  Tensor<double, Shape<dyn, 2, 2, 3>> a(N), da(N);
  Tensor<double, Shape<dyn, 2, 2, 2>> b(N), db(N);
  Tensor<double, Shape<dyn, 2, 2, 5>> out(N);
  randn(a, 34);
  randn(b, 35);
  nn::concat_channels<double, 2, 2, 3, 2>(a, b, out);
  EXPECT_EQ(out(1, 1, 0, 2), a(1, 1, 0, 2));
  EXPECT_EQ(out(1, 1, 0, 4), b(1, 1, 0, 1));
  da = 1.0;
  db = 1.0;
  nn::concat_channels_backward<double, 2, 2, 3, 2>(out, da, 1.0, db, 0.0);
  EXPECT_EQ(da(0, 1, 1, 1), a(0, 1, 1, 1) + 1.0);
  EXPECT_EQ(db(0, 1, 1, 1), b(0, 1, 1, 1));
}

}  // namespace
