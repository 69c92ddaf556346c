// The parameter contract the optimiser and EMA work over, and the global gradient norm.
//
// A model exposes its parameters through
//   template <class F> void for_each_param(F&& f);
// calling f(std::string_view name, std::span<float> value, std::span<float> grad) once per
// parameter tensor, always in the same order (the nn layers and Precond do). Nothing here
// knows about layers or shapes: a parameter is a name and two flat spans.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "diffuse/optim/param_sweep.hpp"

/// Training of parameters: AdamW, the exponential moving average of weights, and
/// gradient-norm clipping, over a model's for_each_param(f).
namespace diffuse::optim {

/// A model whose parameters can be visited (see the file-top comment).
template <class M>
concept Parameterised = requires(M& m) {
  m.for_each_param([](std::string_view, std::span<float>, std::span<float>) {});
};

namespace detail {

/// The sum of squares of a[0][begin, end), in double, in order.
struct SumOfSquares {
  double operator()(float* const* a, std::int64_t begin, std::int64_t end) const {
    const float* x = a[0];
    double s = 0.0;
    for (std::int64_t i = begin; i < end; ++i) s += static_cast<double>(x[i]) * x[i];
    return s;
  }
};

/// a[0][begin, end) *= f.
struct Scale {
  float f;
  void operator()(float* const* a, std::int64_t begin, std::int64_t end, std::int64_t) const {
    float* x = a[0];
    for (std::int64_t i = begin; i < end; ++i) x[i] *= f;
  }
};

/// A pass over the model's gradients: this thread's sweep, refilled (no allocation after
/// the first on the CPU).
template <class Model>
ParamSweep<1>& gradients(Model& model, std::size_t chunk = 0) {
  thread_local ParamSweep<1> sweep;
  sweep.clear(chunk);
  model.for_each_param([&](std::string_view, std::span<float>, std::span<float> g) { sweep.add(g.size(), {g.data()}); });
  return sweep;
}

}  // namespace detail

/// sqrt of the sum of squares of every gradient element, accumulated in double: per chunk
/// of 4096 elements of a parameter, the chunks added in parameter order (the same number
/// for any thread count, on the CPU and the GPU).
template <Parameterised Model>
double grad_norm(Model& model) {
  return std::sqrt(detail::gradients(model, 4096).sum(detail::SumOfSquares{}));
}

/// Scales the gradients so that their global norm is at most `max_norm` (PyTorch's
/// clip_grad_norm_: factor max_norm / (norm + 1e-6) when below 1) and returns the norm
/// before clipping. A non-finite norm is returned with the gradients left unchanged, so
/// that the caller can skip the step.
template <Parameterised Model>
double clip_grad_norm(Model& model, double max_norm) {
  const double norm = grad_norm(model);
  if (!std::isfinite(norm)) return norm;
  const double factor = max_norm / (norm + 1e-6);
  if (factor < 1.0) detail::gradients(model).run(detail::Scale{static_cast<float>(factor)});
  return norm;
}

}  // namespace diffuse::optim
