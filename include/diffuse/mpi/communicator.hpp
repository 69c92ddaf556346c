// Data-parallel training over MPI (the diffuse::mpi component, Open MPI on Debian):
// train::Communicator on an MPI communicator, and the MPI session of a program.
//
//   diffuse::mpi::Session mpi(argc, argv);            // MPI_Init ... MPI_Finalize
//   diffuse::mpi::Communicator world;                 // MPI_COMM_WORLD
//   config.communicator = &world;                     // train::TrainerConfig
//
// MPI's default error handler stays: an MPI failure, or a process that dies, ends the
// whole job instead of leaving the others waiting. A process that fails on its own (bad
// input) calls abort(), for the same reason.
#pragma once

#include <mpi.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "diffuse/train/communicator.hpp"

namespace diffuse::mpi {

/// Whether an MPI launcher (mpirun / mpiexec of Open MPI or MPICH, srun) started this
/// process: a program started on its own then runs without MPI, as a single process.
inline bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"})
    if (std::getenv(v)) return true;
  return false;
}

/// MPI for the lifetime of the object: MPI_Init_thread (only the main thread calls MPI:
/// MPI_THREAD_FUNNELED) and MPI_Finalize. One per program.
class Session {
 public:
  /// Starts MPI with the program's arguments (MPI_Init_thread, MPI_THREAD_FUNNELED),
  /// unless the program has started it.
  Session(int& argc, char**& argv) {
    int started = 0;
    MPI_Initialized(&started);
    if (started) return;
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    owner_ = true;
  }
  /// Ends MPI (MPI_Finalize) if this session started it and it has not ended.
  ~Session() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owner_ && !finalized) MPI_Finalize();
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

 private:
  bool owner_ = false;
};

/// train::Communicator on an MPI communicator (MPI_COMM_WORLD by default).
class Communicator final : public train::Communicator {
 public:
  /// The processes of `comm` (needs a started Session).
  explicit Communicator(MPI_Comm comm = MPI_COMM_WORLD) : comm_(comm) {
    int r = 0, n = 1;
    MPI_Comm_rank(comm_, &r);
    MPI_Comm_size(comm_, &n);
    rank_ = static_cast<std::size_t>(r);
    size_ = static_cast<std::size_t>(n);
  }
  std::size_t rank() const override { return rank_; }
  std::size_t size() const override { return size_; }
  void sum(std::span<float> values) override { allreduce(values.data(), values.size(), MPI_FLOAT, MPI_SUM); }
  void sum(std::span<double> values) override { allreduce(values.data(), values.size(), MPI_DOUBLE, MPI_SUM); }
  void broadcast(std::span<double> values) override {
    for (std::size_t at = 0; at < values.size(); at += chunk)
      MPI_Bcast(values.data() + at, count(values.size() - at), MPI_DOUBLE, 0, comm_);
  }
  bool same_everywhere(std::uint64_t value) override {
    std::uint64_t v[2] = {value, ~value};  // max(v) == v and max(~v) == ~v: min(v) == max(v)
    MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_UINT64_T, MPI_MAX, comm_);
    return v[0] == value && v[1] == ~value;
  }
  /// Ends every process of the job with exit status `code` (MPI_Abort).
  [[noreturn]] void abort(int code) {
    MPI_Abort(comm_, code);
    std::abort();
  }

 private:
  static constexpr std::size_t chunk = std::size_t{1} << 30;  // MPI counts are int
  static int count(std::size_t left) { return static_cast<int>(left < chunk ? left : chunk); }
  void allreduce(void* data, std::size_t n, MPI_Datatype type, MPI_Op op) {
    int bytes = 0;
    MPI_Type_size(type, &bytes);
    for (std::size_t at = 0; at < n; at += chunk)
      MPI_Allreduce(MPI_IN_PLACE, static_cast<char*>(data) + at * static_cast<std::size_t>(bytes), count(n - at), type,
                    op, comm_);
  }

  MPI_Comm comm_;
  std::size_t rank_ = 0, size_ = 1;
};

}  // namespace diffuse::mpi
