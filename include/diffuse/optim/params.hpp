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
#include <span>
#include <string_view>

/// Training of parameters: AdamW, the exponential moving average of weights, and
/// gradient-norm clipping, over a model's for_each_param(f).
namespace diffuse::optim {

/// A model whose parameters can be visited (see the file-top comment).
template <class M>
concept Parameterised = requires(M& m) {
  m.for_each_param([](std::string_view, std::span<float>, std::span<float>) {});
};

/// sqrt of the sum of squares of every gradient element (accumulated in double, in
/// parameter order: the same number for any thread count).
template <Parameterised Model>
double grad_norm(Model& model) {
  double ss = 0.0;
  model.for_each_param([&](std::string_view, std::span<float>, std::span<float> g) {
    for (float x : g) ss += static_cast<double>(x) * x;
  });
  return std::sqrt(ss);
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
  if (factor < 1.0) {
    const auto f = static_cast<float>(factor);
    model.for_each_param([&](std::string_view, std::span<float>, std::span<float> g) {
      for (float& x : g) x *= f;
    });
  }
  return norm;
}

}  // namespace diffuse::optim
