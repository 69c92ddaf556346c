// The processes of a data-parallel training run, as the trainer sees them: its rank, the
// number of processes, and the collective operations a step needs. The trainer knows
// nothing of the transport; diffuse/mpi/communicator.hpp implements it with MPI.
//
// Every process takes its share of each global batch (batch_share), computes the gradient
// of its images, and the gradients are summed over the processes before one identical
// update on every process (train/trainer.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>

namespace diffuse::train {

/// A group of processes that train one model together (data parallelism). Every process
/// calls each collective operation in the same order with the same sizes.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::size_t rank() const = 0;  ///< This process's index, 0 .. size() - 1.
  virtual std::size_t size() const = 0;  ///< Number of processes.
  /// Replaces `values` on every process by their sum over the processes (MPI_Allreduce).
  virtual void sum(std::span<float> values) = 0;
  /// As sum(std::span<float>), in double precision.
  virtual void sum(std::span<double> values) = 0;
  /// Replaces `values` on every process by process 0's (MPI_Bcast).
  virtual void broadcast(std::span<double> values) = 0;
  /// Whether `value` is the same on every process (e.g. a hash of the options and data).
  virtual bool same_everywhere(std::uint64_t value) = 0;
};

/// The images [begin, end) of a global batch of `batch` images that process `rank` of
/// `ranks` takes: shares as even as the batch allows (sizes differ by at most one).
struct BatchShare {
  ///@{
  /// First image and one past the last, as slots of the global batch.
  std::size_t begin = 0, end = 0;
  ///@}
  std::size_t size() const noexcept { return end - begin; }  ///< Images of this share.
};

/// Process `rank`'s share of a batch of `batch` images split over `ranks` processes.
/// Throws std::invalid_argument when a process would get no image (batch < ranks).
inline BatchShare batch_share(std::size_t batch, std::size_t rank, std::size_t ranks) {
  if (ranks == 0 || rank >= ranks || batch < ranks)
    throw std::invalid_argument("diffuse::train: a batch of " + std::to_string(batch) + " images cannot be shared by " +
                                std::to_string(ranks) + " processes (each needs at least one image)");
  return {batch * rank / ranks, batch * (rank + 1) / ranks};
}

}  // namespace diffuse::train
