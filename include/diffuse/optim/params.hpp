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

#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/core/ops.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/kernels/offload.hpp"

/// Training of parameters: AdamW, the exponential moving average of weights, and
/// gradient-norm clipping, over a model's for_each_param(f).
namespace diffuse::optim {

/// A model whose parameters can be visited (see the file-top comment).
template <class M>
concept Parameterised = requires(M& m) {
  m.for_each_param([](std::string_view, std::span<float>, std::span<float>) {});
};

namespace detail {

/// ss += the squares of the n values at x, in double, in order. On the GPU: chunks of 4096
/// summed there, the chunks' sums added here in order.
inline void add_squares(double& ss, const float* x, std::size_t n) {
  if (diffuse::detail::on_device()) {
    constexpr std::size_t chunk = 4096;
    diffuse::detail::AlignedBuffer<double> parts((n + chunk - 1) / chunk);
    if (parts.size() == 0) return;
    kernels::device::chunk_squares(diffuse::detail::device_address(x), diffuse::detail::device_address(parts.data()), n,
                                   chunk);
    update_host(parts.data(), parts.size());
    for (std::size_t i = 0; i < parts.size(); ++i) ss += parts.data()[i];
    return;
  }
  for (std::size_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
}

}  // namespace detail

/// sqrt of the sum of squares of every gradient element (accumulated in double, in
/// parameter order: the same number for any thread count).
template <Parameterised Model>
double grad_norm(Model& model) {
  double ss = 0.0;
  model.for_each_param([&](std::string_view, std::span<float>, std::span<float> g) {
    detail::add_squares(ss, g.data(), g.size());
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
      TensorView<float, Shape<dyn>> grad(g.data(), g.size());
      grad = grad * f;  // an expression: on the GPU while that is the device
    });
  }
  return norm;
}

}  // namespace diffuse::optim
