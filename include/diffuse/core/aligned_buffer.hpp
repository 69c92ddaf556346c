// Owning, 64-byte aligned, contiguous storage for tensors.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "diffuse/core/device.hpp"
#include "diffuse/core/simd.hpp"

namespace diffuse::detail {

/// A zero-initialised array of n T's on a 64-byte boundary (the size is rounded up to
/// whole cache lines so that SIMD code may read the last line in full). Made while the
/// GPU is the active device (device.hpp), it has a device copy, zeroed too, which the
/// kernels then work on; copies of a buffer copy the device contents as well.
template <class T>
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t n) : size_(n) {
    if (n == 0) return;
    bytes_ = (n * sizeof(T) + tensor_alignment - 1) / tensor_alignment * tensor_alignment;
    void* p = std::aligned_alloc(tensor_alignment, bytes_);
    if (!p) throw std::bad_alloc();
    std::memset(p, 0, bytes_);
    data_ = static_cast<T*>(p);
    if (device_memory()) {
      try {
        device_map(data_, bytes_);
      } catch (...) {
        std::free(data_);
        throw;
      }
      device_ = device_number();
    }
  }
  AlignedBuffer(const AlignedBuffer& o) : AlignedBuffer(o.size_) { copy_from(o); }
  AlignedBuffer& operator=(const AlignedBuffer& o) {
    if (this != &o) {
      if (size_ != o.size_ || device_ != (device_memory() ? device_number() : -1))
        *this = AlignedBuffer(o.size_);
      copy_from(o);
    }
    return *this;
  }
  AlignedBuffer(AlignedBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)),
        bytes_(std::exchange(o.bytes_, 0)), device_(std::exchange(o.device_, -1)) {}
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      bytes_ = std::exchange(o.bytes_, 0);
      device_ = std::exchange(o.device_, -1);
    }
    return *this;
  }
  ~AlignedBuffer() { release(); }

  T* data() noexcept { return data_; }
  const T* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  /// The OpenMP device number holding a copy, or -1 (host only).
  int device() const noexcept { return device_; }

 private:
  void release() noexcept {
    if (!data_) return;
    if (device_ >= 0) device_unmap(data_, bytes_, device_);
    std::free(data_);
    data_ = nullptr;
  }
  // Same size: copies the host contents, and the device contents where there are some.
  void copy_from(const AlignedBuffer& o) {
    if (!size_) return;
#if DIFFUSE_OFFLOAD_ENABLED
    if (o.device_ >= 0 && device_ == o.device_) {
      std::memcpy(data_, o.data_, size_ * sizeof(T));
      omp_target_memcpy(device_address(data_), device_address(const_cast<T*>(o.data_)), bytes_, 0, 0, device_,
                        device_);
      return;
    }
    if (o.device_ >= 0) update_host(o.data_, o.size_);
#endif
    std::memcpy(data_, o.data_, size_ * sizeof(T));
    if (device_ >= 0) update_device(data_, size_);
  }

  T* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t bytes_ = 0;
  int device_ = -1;
};

}  // namespace diffuse::detail
