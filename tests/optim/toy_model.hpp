// A model with two small parameter tensors, for the optimiser tests.
#pragma once

#include <span>
#include <string_view>
#include <vector>

namespace diffuse::testing {

struct ToyModel {
  std::vector<float> w{0.5f, -1.0f, 2.0f, 0.0f, -0.25f}, b{1.0f, -3.0f, 0.125f};
  std::vector<float> dw = std::vector<float>(5, 0.f), db = std::vector<float>(3, 0.f);

  template <class F>
  void for_each_param(F&& f) {
    f(std::string_view("layer.weight"), std::span<float>(w), std::span<float>(dw));
    f(std::string_view("layer.bias"), std::span<float>(b), std::span<float>(db));
  }
  void zero_grad() {
    for (auto& g : dw) g = 0.f;
    for (auto& g : db) g = 0.f;
  }
};

}  // namespace diffuse::testing
