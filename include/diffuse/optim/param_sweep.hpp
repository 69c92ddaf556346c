// One pass of an element-wise (or chunk-wise) operation over every parameter of a model:
// the optimiser, the EMA and the gradient norm touch ~100 separate tensors per step.
//
// On the GPU a pass is one launch over all of them: a table of each parameter's size,
// running offset and array addresses goes to the device in one copy, and each work item
// finds its parameter by binary search in the offsets (a launch costs 20-300 us there,
// docs/gpu.md; one per parameter made the optimiser step cost more than the network). On
// the CPU it is a loop over the parameters, each split over the threads as before.
//
// The operation is one function for both: op(arrays, begin, end, item) handles elements
// [begin, end) of the parameter whose arrays (A float pointers: value, gradient, state...)
// it is given; with a chunk size, `item` numbers the chunk across all parameters (element-
// wise passes get no meaningful item). sum() adds a per-chunk term in a fixed order (the
// gradient norm).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/core/device.hpp"
#include "diffuse/core/parallel.hpp"

namespace diffuse::optim::detail {

// The device work item: item i -> (parameter j, its chunk q) -> op on [q c, min(n, q c + c)).
// `table` holds count + 1 offsets (in items), count sizes (in elements), then count x A
// array addresses, all 8 bytes wide.
static_assert(sizeof(float*) == sizeof(std::int64_t), "the table holds addresses in 8-byte slots");

template <int A, class Op>
struct SweepItem {
  const unsigned char* table;
  int count;
  std::int64_t chunk;  // elements per item
  Op op;
  void operator()(int i) const {
    const auto* offsets = reinterpret_cast<const std::int64_t*>(table);
    const auto* sizes = offsets + count + 1;
    const auto* arrays = reinterpret_cast<float* const*>(sizes + count);
    int lo = 0, hi = count;  // the last j with offsets[j] <= i
    while (hi - lo > 1) {
      const int mid = (lo + hi) / 2;
      if (offsets[mid] <= i) lo = mid;
      else hi = mid;
    }
    const std::int64_t begin = (i - offsets[lo]) * chunk, end = begin + chunk;
    op(arrays + lo * A, begin, end < sizes[lo] ? end : sizes[lo], std::int64_t(i));
  }
};

/// A pass over parameters with A float arrays each (see the file comment). `chunk` is the
/// number of elements one call of the operation must see together (a partial sum per
/// chunk); 0 means any split will do (element-wise operations). Kept by its user and
/// refilled for each pass, so that passes on the CPU allocate nothing after the first.
template <int A>
class ParamSweep {
 public:
  explicit ParamSweep(std::size_t chunk = 0) : chunk_(chunk) {}

  /// Forgets the parameters (keeping the memory) and sets the chunk size.
  void clear(std::size_t chunk = 0) {
    chunk_ = chunk;
    items_ = 0;
    params_.clear();
  }

  /// Adds a parameter of n elements whose A arrays start at these host addresses (inside
  /// tensors or buffers made on the device while the GPU is the device).
  void add(std::size_t n, const std::array<float*, A>& arrays) {
    params_.push_back({n, arrays});
    items_ += items_of(n);
  }

  /// Work items over all parameters: elements, or chunks when chunk > 0.
  std::size_t items() const { return items_; }

  /// Runs op over every element of every parameter, on the current device. `cost`:
  /// multiply-adds per element, for the launch shape.
  template <class Op>
  void run(const Op& op, std::int64_t cost = 1) const {
    if (items_ == 0) return;
    if (diffuse::detail::on_device()) {
      run_on_device(op, cost);
      return;
    }
    std::int64_t first = 0;
    for (const Param& p : params_) {
      float* const* arrays = p.arrays.data();
      const auto n = static_cast<std::int64_t>(p.n);
      // Element-wise: ranges of any size, so that the loop inside op vectorises.
      const std::int64_t c = chunk_ > 0 ? static_cast<std::int64_t>(chunk_) : std::int64_t{4096};
      const std::int64_t parts = (n + c - 1) / c;
      parallel_for(parts, threads_for(p.n), [&](std::int64_t q) {
        op(arrays, q * c, q * c + c < n ? q * c + c : n, first + q);
      });
      first += static_cast<std::int64_t>(items_of(p.n));
    }
  }

  /// The sum over every chunk of term(arrays, begin, end) (a double per chunk, the chunks
  /// added in order on the host): the same number for any thread count, on either device.
  /// Needs a chunk size (std::logic_error without one).
  template <class Term>
  double sum(const Term& term, std::int64_t cost = 1) {
    if (chunk_ == 0) throw std::logic_error("diffuse::optim::detail::ParamSweep::sum: a sum needs a chunk size");
    if (items_ == 0) return 0.0;
    const double* parts = nullptr;
    diffuse::detail::AlignedBuffer<double> on_gpu;  // the GPU's partial sums, read back
    if (diffuse::detail::on_device()) {
      on_gpu = diffuse::detail::AlignedBuffer<double>(items_);
      run(Partial<Term>{term, diffuse::detail::device_address(on_gpu.data())}, cost);
      update_host(on_gpu.data(), items_);
      parts = on_gpu.data();
    } else {
      partial_.resize(items_);
      run(Partial<Term>{term, partial_.data()}, cost);
      parts = partial_.data();
    }
    double s = 0.0;
    for (std::size_t i = 0; i < items_; ++i) s += parts[i];
    return s;
  }

 private:
  struct Param {
    std::size_t n;
    std::array<float*, A> arrays;
  };

  std::size_t items_of(std::size_t n) const { return chunk_ > 0 ? (n + chunk_ - 1) / chunk_ : n; }

  template <class Op>
  void run_on_device(const Op& op, std::int64_t cost) const {
    const std::size_t count = params_.size();
    std::vector<std::int64_t> table(2 * count + 1 + count * A);
    std::int64_t offset = 0;
    for (std::size_t j = 0; j < count; ++j) {
      table[j] = offset;
      offset += static_cast<std::int64_t>(items_of(params_[j].n));
      table[count + 1 + j] = static_cast<std::int64_t>(params_[j].n);
      for (int a = 0; a < A; ++a) {
        float* d = diffuse::detail::device_address(params_[j].arrays[std::size_t(a)]);
        std::memcpy(&table[2 * count + 1 + j * A + std::size_t(a)], &d, sizeof d);
      }
    }
    table[count] = offset;
    diffuse::detail::DeviceStaging stage;  // the table's device copy, for this launch
    const auto* t = reinterpret_cast<const unsigned char*>(stage(table.data(), table.size()));
    const std::int64_t c = chunk_ > 0 ? static_cast<std::int64_t>(chunk_) : 1;
    diffuse::detail::launch(diffuse::detail::LaunchKind::elementwise, static_cast<std::int64_t>(items_), cost * c,
                            SweepItem<A, Op>{t, static_cast<int>(count), c, op});
  }

  // out[item] = the term of the item's chunk.
  template <class Term>
  struct Partial {
    Term term;
    double* out;
    void operator()(float* const* a, std::int64_t begin, std::int64_t end, std::int64_t item) const {
      out[item] = term(a, begin, end);
    }
  };

  std::size_t chunk_;
  std::size_t items_ = 0;
  std::vector<Param> params_;
  std::vector<double> partial_;  // the CPU's partial sums
};

}  // namespace diffuse::optim::detail
