// diffuse-train's command: parse and check the command line, choose the configuration
// from the table of configurations, run it. Light (no network code): the runs come as function pointers,
// compiled elsewhere (train_main.hpp).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <string>

#include "diffuse/io/data_error.hpp"
#include "diffuse/programs/common.hpp"
#include "diffuse/programs/models.hpp"
#include "diffuse/programs/train_cli.hpp"
#include "diffuse/programs/train_options.hpp"
#include "diffuse/train/checkpoint_info.hpp"
#if defined(DIFFUSE_MPI)
#include <chrono>
#include <optional>
#include <thread>

#include "diffuse/mpi/communicator.hpp"
#endif

namespace diffuse::programs {

/// diffuse-train's main over the configurations of `models`: returns the exit status
/// (0 done, 1 bad data or checkpoint, 2 bad command line, 130 interrupted). `frechet`
/// makes --eval-every's distance (frechet_function, or frechet_function_for<H, W, C>;
/// without it --eval-every is an error).
///
/// Built with diffuse::mpi (DIFFUSE_MPI) and started by mpirun with more than one process,
/// it trains data-parallel (train/communicator.hpp): process 0 prints and writes the files,
/// and an error on any process ends the whole job with its exit status (MPI_Abort), so
/// that no process is left waiting.
inline int train_command(int argc, char** argv, const std::vector<TrainEntry>& models,
                         const char* program = "diffuse-train", FrechetFactory frechet = nullptr) {
  TrainOptions o;
  o.frechet = frechet;
  CLI::App app{std::string(program) + ": trains an EDM diffusion model on images"};
  TrainCommandLine c;
  add_train_options(app, o, c, names_of(models));
  if (const int code = parse_command_line(app, argc, argv, program); code >= 0) return code;
  std::string name = program;  // what messages start with
#if defined(DIFFUSE_MPI)
  std::optional<mpi::Session> session;
  std::optional<mpi::Communicator> world;
  if (mpi::launched_by_mpi()) {
    session.emplace(argc, argv);
    world.emplace();
    if (world->size() > 1) o.communicator = &*world;
    if (world->rank() > 0) name += " (process " + std::to_string(world->rank()) + ")";
  }
#endif
  const bool quiet = o.communicator && o.communicator->rank() > 0;
  int status = start_program(name.c_str(), o.threads, c.precision, c.device, c.info, quiet);
  if (status < 0) status = run_reporting_errors(name.c_str(), [&] {
    check_train_options(o, app);
    const std::string checkpoint = (std::filesystem::path(o.out) / "checkpoint.safetensors").string();
    if (o.resume && std::filesystem::exists(checkpoint)) {  // say how to resume a run with(out) labels
      const std::size_t classes = train::read_checkpoint_info(checkpoint).classes;
      if (classes > 0 && !o.conditional())
        throw io::DataError(checkpoint, "the run was trained with labels (" + std::to_string(classes) +
                                            " classes): pass --labels FILE or --class-folders to resume it");
      if (classes == 0 && o.conditional())
        throw io::DataError(checkpoint, "the run was trained without labels: resume it without --labels / --class-folders");
    }
    return find_model(models, o.model).run(o.conditional())(o);
  });
#if defined(DIFFUSE_MPI)
  // A failed process ends the job (the others may wait in a collective). Most errors
  // (bad options or data) strike every process alike: the others wait a moment, so that
  // process 0 reports and ends the job; an error of their own ends it a moment later.
  if (o.communicator && status != 0 && status != 130) {
    if (o.communicator->rank() > 0) std::this_thread::sleep_for(std::chrono::seconds(2));
    world->abort(status);
  }
#endif
  return status;
}

}  // namespace diffuse::programs
