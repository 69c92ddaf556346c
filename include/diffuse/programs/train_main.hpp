// diffuse-train for any configuration: train_main<Cfg>(argc, argv, "name") is the whole
// program (options, data, checkpoints, logs, sample grids) for a user's own UNetConfig:
//
//   #include <diffuse/programs/train_main.hpp>
//   constexpr diffuse::nn::UNetConfig my_net{.image_channels = 3, .image_size = 32, .channels = 48};
//   int main(int argc, char** argv) { return diffuse::programs::train_main<my_net>(argc, argv, "my-net"); }
//
// (examples/own_model_train.cpp). train_entry<Cfg> (train_run.hpp) is the same
// configuration as an entry of diffuse-train's table.
#pragma once

#include <string>

#include "diffuse/programs/frechet_eval.hpp"
#include "diffuse/programs/train_command.hpp"
#include "diffuse/programs/train_run.hpp"

namespace diffuse::programs {

/// The whole of diffuse-train for configuration Cfg, saved in checkpoints as `name`:
/// returns the exit status (see train_command). Messages start with the program's file name.
template <nn::UNetConfig Cfg>
int train_main(int argc, char** argv, std::string name) {
  const std::string program = program_name(argc, argv, "diffuse-train");
  return train_command(argc, argv, {train_entry<Cfg>(std::move(name))}, program.c_str(),
                       &frechet_function_for<Cfg.image_size, Cfg.image_size, Cfg.image_channels>);
}

}  // namespace diffuse::programs
