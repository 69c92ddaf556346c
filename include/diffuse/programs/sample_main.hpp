// diffuse-sample for any configuration: sample_main<Cfg>(argc, argv, "name") is the whole
// program (checkpoint or weights, every sampler and schedule, img2img, guidance, grids)
// for a user's own UNetConfig (examples/own_model_sample.cpp). sample_entry<Cfg> is the
// same configuration as an entry of diffuse-sample's table.
#pragma once

#include <memory>
#include <string>

#include "diffuse/nn/state_dict.hpp"
#include "diffuse/programs/sample_command.hpp"
#include "diffuse/programs/sample_run.hpp"

namespace diffuse::programs {

namespace detail {

// Whether every parameter of UNet<Cfg> is in the file with PyTorch's shape.
template <nn::UNetConfig Cfg>
bool weights_fit(const io::SafetensorsFile& file, std::size_t classes) {
  if (classes != Cfg.classes) return false;
  const auto net = std::make_unique<nn::UNet<Cfg>>();
  bool fit = true;
  net->for_each_param_ref([&](const nn::ParamRef<float>& p) {
    fit = fit && file.contains(p.name) && file.info(p.name).shape == nn::torch_shape(p);
  });
  return fit;
}

template <nn::UNetConfig Cfg>
bool weights_fit_either(const io::SafetensorsFile& file, std::size_t classes) {
  if constexpr (Cfg.classes == 0)
    return classes == 0 ? weights_fit<Cfg>(file, 0) : weights_fit<labelled(Cfg)>(file, classes);
  else
    return weights_fit<Cfg>(file, classes);
}

}  // namespace detail

/// The entry of configuration Cfg called `name` (see train_entry).
template <nn::UNetConfig Cfg>
SampleEntry sample_entry(std::string name) {
  SampleEntry e;
  e.name = std::move(name);
  if constexpr (Cfg.classes == 0) {
    e.classes = label_classes;
    e.unconditional = &sample_model<Cfg>;
    e.conditional = &sample_model<labelled(Cfg)>;
  } else {
    e.classes = Cfg.classes;
    e.conditional = &sample_model<Cfg>;
  }
  e.fits = &detail::weights_fit_either<Cfg>;
  return e;
}

/// The whole of diffuse-sample for configuration Cfg called `name`: returns the exit
/// status (see sample_command). Messages start with the program's file name.
template <nn::UNetConfig Cfg>
int sample_main(int argc, char** argv, std::string name) {
  const std::string program = program_name(argc, argv, "diffuse-sample");
  return sample_command(argc, argv, {sample_entry<Cfg>(std::move(name))}, program.c_str());
}

}  // namespace diffuse::programs
