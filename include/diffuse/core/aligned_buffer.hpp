// Owning, 64-byte aligned, contiguous storage for tensors.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "diffuse/core/simd.hpp"

namespace diffuse::detail {

struct AlignedFree {
  void operator()(void* p) const noexcept { std::free(p); }
};

/// A zero-initialised array of n T's on a 64-byte boundary (the size is rounded up to
/// whole cache lines so that SIMD code may read the last line in full).
template <class T>
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t n) : size_(n) {
    if (n == 0) return;
    std::size_t bytes = (n * sizeof(T) + tensor_alignment - 1) / tensor_alignment * tensor_alignment;
    void* p = std::aligned_alloc(tensor_alignment, bytes);
    if (!p) throw std::bad_alloc();
    std::memset(p, 0, bytes);
    data_.reset(static_cast<T*>(p));
  }
  AlignedBuffer(const AlignedBuffer& o) : AlignedBuffer(o.size_) {
    if (size_) std::memcpy(data_.get(), o.data_.get(), size_ * sizeof(T));
  }
  AlignedBuffer& operator=(const AlignedBuffer& o) {
    if (this != &o) {
      if (size_ != o.size_) *this = AlignedBuffer(o.size_);
      if (size_) std::memcpy(data_.get(), o.data_.get(), size_ * sizeof(T));
    }
    return *this;
  }
  AlignedBuffer(AlignedBuffer&& o) noexcept : data_(std::move(o.data_)), size_(o.size_) { o.size_ = 0; }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    data_ = std::move(o.data_);
    size_ = o.size_;
    o.size_ = 0;
    return *this;
  }

  T* data() noexcept { return data_.get(); }
  const T* data() const noexcept { return data_.get(); }
  std::size_t size() const noexcept { return size_; }

 private:
  std::unique_ptr<T, AlignedFree> data_;
  std::size_t size_ = 0;
};

}  // namespace diffuse::detail
