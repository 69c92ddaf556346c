// Class labels of class-conditional models: label k in [0, classes) is a class, -1 is
// "no label" (the unconditional model of classifier-free guidance). Used by the label
// embedding, the preconditioning, guidance, the trainer and evaluation.
#pragma once

#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>

namespace diffuse::nn {

/// The label of an image shown without its class.
inline constexpr int no_label = -1;

/// Classes of a model or network M: M::classes, 0 when it has none (unconditional).
template <class M>
inline constexpr std::size_t classes_v = [] {
  if constexpr (requires { M::classes; }) return std::size_t{M::classes};
  else return std::size_t{0};
}();

/// Throws std::invalid_argument unless every label is -1 or in [0, classes); `what`
/// names the caller, e.g. "diffuse::nn::UNet::forward".
inline void check_labels(std::span<const int> labels, std::size_t classes, const char* what) {
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const int k = labels[i];
    if (k < -1 || (k >= 0 && static_cast<std::size_t>(k) >= classes))
      throw std::invalid_argument(std::string(what) + ": label " + std::to_string(k) +
                                  " of image " + std::to_string(i) + " is not a class of this model (" +
                                  (classes ? "0.." + std::to_string(classes - 1) + ", or -1 for none"
                                           : "it has no classes; use -1") +
                                  ")");
  }
}

}  // namespace diffuse::nn
