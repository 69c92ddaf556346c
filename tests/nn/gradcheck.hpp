// Helpers of the nn tests: central finite differences in double precision.
//
// A layer's loss is L = sum(y * w) for a fixed random w, so dL/dy = w is what backward
// receives. Every checked element p is perturbed by +-h and
//   (L(p + h) - L(p - h)) / 2h
// compared with the analytic gradient at a relative tolerance.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <span>
#include <string>
#include <vector>

#include <diffuse/unet.hpp>

#include "support/finite_difference.hpp"

namespace diffuse::nn_test {

/// Indices of up to `max` elements of a span of n (all of them when n <= max), spread out.
inline std::vector<std::size_t> sample_indices(std::size_t n, std::size_t max, unsigned seed = 1) {
  std::vector<std::size_t> idx;
  if (n <= max) {
    for (std::size_t i = 0; i < n; ++i) idx.push_back(i);
    return idx;
  }
  Generator g(seed, 99);
  Tensor<double, Shape<dyn>> u(max);
  fill_uniform(u, g);
  for (std::size_t i = 0; i < max; ++i) idx.push_back(std::min(n - 1, std::size_t(u(i) * double(n))));
  return idx;
}

/// Compares analytic[i] with the central difference of loss() in values[i] for sampled i.
template <class Loss>
void expect_gradient(const std::string& what, std::span<double> values, std::span<const double> analytic,
                     Loss&& loss, std::size_t max_checks = 24, double h = 1e-5, double tol = 1e-6) {
  ASSERT_EQ(values.size(), analytic.size()) << what;
  int failures = 0;
  for (std::size_t i : sample_indices(values.size(), max_checks)) {
    const double numeric = diffuse::testing::central_difference(values[i], loss, h);
    const double a = analytic[i];
    const double scale = std::max({1e-3, std::abs(a), std::abs(numeric)});
    if (!(std::abs(a - numeric) <= tol * scale) && failures++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: analytic " << a << ", finite difference " << numeric;
  }
  EXPECT_EQ(failures, 0) << what << ": " << failures << " mismatching elements";
}

/// Checks every parameter of `model` (visit_params) against finite differences of
/// run(false), after run(true) has done forward + backward once with zeroed gradients.
template <class Model, class Run>
void expect_param_gradients(const std::string& what, Model& model, Run&& run, std::size_t max_checks = 24) {
  nn::zero_grad_of(model);
  run(true);
  std::vector<std::pair<std::string, std::vector<double>>> grads;
  std::vector<std::span<double>> values;
  nn::for_each_param_of(model, [&](std::string_view name, std::span<double> v, std::span<double> g) {
    grads.emplace_back(std::string(name), std::vector<double>(g.begin(), g.end()));
    values.push_back(v);
  });
  ASSERT_FALSE(grads.empty());
  for (std::size_t k = 0; k < grads.size(); ++k)
    expect_gradient(what + " " + grads[k].first, values[k], grads[k].second, [&] { return run(false); }, max_checks);
}

/// max |a - b| / max |b| (or max |a - b| when b is all zeros): the error of a against a
/// reference b relative to the reference's scale.
inline double relative_error(std::span<const float> a, std::span<const float> b) {
  double e = 0, r = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    e = std::max(e, std::abs(double(a[i]) - double(b[i])));
    r = std::max(r, std::abs(double(b[i])));
  }
  return r > 0 ? e / r : e;
}

/// sum(a * b) over two equally sized ranges.
template <class A, class B>
double dot(const A& a, const B& b) {
  double s = 0;
  auto ib = b.begin();
  for (auto x : a) s += double(x) * double(*ib++);
  return s;
}

/// Fills a tensor with N(0, sd^2) numbers from a fixed seed.
template <class X>
void randn(X&& t, std::uint64_t seed, double sd = 1.0) {
  Generator g(seed);
  fill_normal(t, g, 0.0, sd);
}

template <class X>
std::span<double> span_of(X& t) {
  return {t.data(), t.size()};
}

}  // namespace diffuse::nn_test
