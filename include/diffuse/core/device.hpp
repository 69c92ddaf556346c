/// \file
/// Where tensors live and kernels run: the host CPU, or a GPU through OpenMP target offload.
///
/// A program picks the device once, before it creates its tensors (`select_device("auto")`,
/// or `--device` / `DIFFUSE_DEVICE` in the programs). While the GPU is selected, every
/// tensor storage made is also allocated on the GPU (`omp target enter data`), the kernels
/// and element-wise expressions run there on that memory, and the host copy is stale until
/// `update_host` copies it back (a sample grid, a checkpoint); host code that writes a
/// tensor (loading weights, drawing noise) calls `update_device` after. The data stays on
/// the GPU for a whole sampling run: no copy per operation.
///
/// The GPU path exists only in builds with DIFFUSE_OFFLOAD (CMake option of the same name:
/// GCC with -foffload=nvptx-none); elsewhere `gpu` is an error and everything runs on the
/// CPU. `detail::emulate_device_on_host()` runs the device code on the host (OpenMP's host
/// fallback) on separate copies of the tensors, which is how the tests check the device
/// kernels and the transfers on machines without a GPU.
///
/// Errors: DeviceError (a std::runtime_error) when `gpu` is asked for and none can be used,
/// and for a device choice that is not auto, cpu or gpu.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "diffuse/core/parallel.hpp"

#if defined(DIFFUSE_OFFLOAD) && defined(_OPENMP)
/// 1 in builds that carry device code (DIFFUSE_OFFLOAD with OpenMP), else 0.
#define DIFFUSE_OFFLOAD_ENABLED 1
/// `DIFFUSE_TARGET(target ...)` is `#pragma omp target ...` in builds with device code,
/// and nothing elsewhere (the loop after it then runs on the host, serially).
#define DIFFUSE_TARGET(...) DIFFUSE_PRAGMA(omp __VA_ARGS__)
#include <dlfcn.h>
#else
/// 1 in builds that carry device code (DIFFUSE_OFFLOAD with OpenMP), else 0.
#define DIFFUSE_OFFLOAD_ENABLED 0
/// `#pragma omp target ...` in builds with device code; nothing in this build.
#define DIFFUSE_TARGET(...)
#endif

namespace diffuse {

/// Where tensors live and kernels run.
enum class Device {
  cpu,  ///< the host: the xsimd + OpenMP kernels
  gpu,  ///< an OpenMP offload device (DIFFUSE_OFFLOAD builds)
};

/// "cpu" or "gpu".
inline const char* to_string(Device d) noexcept { return d == Device::gpu ? "gpu" : "cpu"; }

/// A device that cannot be used, or an unknown device name.
class DeviceError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// True in builds with device code (DIFFUSE_OFFLOAD).
inline constexpr bool offload_built = DIFFUSE_OFFLOAD_ENABLED == 1;

/// GPUs the OpenMP runtime can use (omp_get_num_devices()); 0 without DIFFUSE_OFFLOAD.
inline int gpu_count() noexcept {
#if DIFFUSE_OFFLOAD_ENABLED
  return omp_get_num_devices();
#else
  return 0;
#endif
}

namespace detail {

struct DeviceState {
  Device active = Device::cpu;
  int number = 0;         // OpenMP device number of the GPU
  bool emulated = false;  // the device code runs on the host, on separate copies (tests)
};
inline DeviceState& device_state() noexcept {
  static DeviceState s;
  return s;
}

/// The kinds of device kernel, for the launch profile.
enum class LaunchKind { elementwise, gemm, conv2d, group_norm, softmax, resample, concat, count };
inline constexpr const char* launch_kind_names[] = {"element-wise", "gemm", "conv2d", "group_norm",
                                                    "softmax", "upsample", "concat"};

/// Launches and wall time per kind of device kernel since the start (device kernels are
/// synchronous, so the wall time of a launch is its kernel's time plus the launch cost).
struct LaunchProfile {
  std::atomic<std::uint64_t> launches[std::size_t(LaunchKind::count)] = {};
  std::atomic<std::uint64_t> nanoseconds[std::size_t(LaunchKind::count)] = {};
};
inline LaunchProfile& launch_profile() noexcept {
  static LaunchProfile p;
  return p;
}

/// Counts one launch of `kind` and its wall time (a scope around one target region).
class LaunchTimer {
 public:
  explicit LaunchTimer(LaunchKind kind) noexcept : kind_(std::size_t(kind)), t0_(std::chrono::steady_clock::now()) {}
  ~LaunchTimer() {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0_);
    launch_profile().launches[kind_].fetch_add(1, std::memory_order_relaxed);
    launch_profile().nanoseconds[kind_].fetch_add(std::uint64_t(ns.count()), std::memory_order_relaxed);
  }
  LaunchTimer(const LaunchTimer&) = delete;
  LaunchTimer& operator=(const LaunchTimer&) = delete;

 private:
  std::size_t kind_;
  std::chrono::steady_clock::time_point t0_;
};

/// True while kernels run as device code (the GPU, or its host emulation).
inline bool on_device() noexcept { return DIFFUSE_OFFLOAD_ENABLED && device_state().active == Device::gpu; }
/// True while tensors made now get a device copy: the GPU is selected (or emulated).
inline bool device_memory() noexcept { return on_device(); }
/// The OpenMP device number device code runs on.
inline int device_number() noexcept { return device_state().number; }

}  // namespace detail

/// Why `gpu` cannot be used here; empty when it can.
inline std::string gpu_unavailable_reason() {
  if (!offload_built)
    return "this build has no GPU code (configure with -DDIFFUSE_OFFLOAD=ON and GCC's offload compiler, "
           "Debian package gcc-12-offload-nvptx)";
  if (gpu_count() <= 0)
    return "the OpenMP runtime finds no GPU (omp_get_num_devices() is 0: no NVIDIA driver, or no device)";
  return {};
}

/// The device in use.
inline Device active_device() noexcept { return detail::device_state().active; }

/// Selects the device by name: "auto" (the GPU when one can be used, else the CPU), "cpu"
/// or "gpu" (DeviceError when no GPU can be used: gpu_unavailable_reason()). Call before
/// creating tensors: a tensor lives where the device was when it was made. Returns the
/// device chosen.
inline Device select_device(std::string_view choice) {
  auto& s = detail::device_state();
  if (choice == "cpu" || (choice == "auto" && !gpu_unavailable_reason().empty())) {
    s = {};
    return Device::cpu;
  }
  if (choice != "auto" && choice != "gpu")
    throw DeviceError("diffuse: unknown device '" + std::string(choice) + "' (expected auto, cpu or gpu)");
  if (std::string why = gpu_unavailable_reason(); !why.empty())
    throw DeviceError("diffuse: no GPU to run on: " + why);
#if DIFFUSE_OFFLOAD_ENABLED
  s = {Device::gpu, omp_get_default_device(), false};
#endif
  return Device::gpu;
}

/// The device named by the environment variable DIFFUSE_DEVICE, "auto" when it is unset.
inline std::string device_from_environment() {
  const char* e = std::getenv("DIFFUSE_DEVICE");
  return e && *e ? std::string(e) : std::string("auto");
}

namespace detail {

/// Runs the device code on the host (OpenMP's initial device) without a GPU, on separate
/// copies of the tensors made from now on, as a GPU would: for tests.
inline void emulate_device_on_host() {
#if DIFFUSE_OFFLOAD_ENABLED
  device_state() = {Device::gpu, omp_get_initial_device(), true};
#else
  throw DeviceError("diffuse: device emulation needs a DIFFUSE_OFFLOAD build");
#endif
}

#if DIFFUSE_OFFLOAD_ENABLED
// The CUDA driver's name and memory of the GPU, read through libcuda when it is there
// (OpenMP has no call for them). Empty when it is not.
inline std::string cuda_device_description(int ordinal) {
  void* lib = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (!lib) return {};
  using Init = int (*)(unsigned);
  using Get = int (*)(int*, int);
  using Name = int (*)(char*, int, int);
  using Mem = int (*)(std::size_t*, int);
  auto init = reinterpret_cast<Init>(dlsym(lib, "cuInit"));
  auto get = reinterpret_cast<Get>(dlsym(lib, "cuDeviceGet"));
  auto name = reinterpret_cast<Name>(dlsym(lib, "cuDeviceGetName"));
  auto mem = reinterpret_cast<Mem>(dlsym(lib, "cuDeviceTotalMem_v2"));
  std::string out;
  int dev = 0;
  char buf[256] = {};
  std::size_t bytes = 0;
  if (init && get && name && mem && init(0) == 0 && get(&dev, ordinal) == 0 && name(buf, sizeof buf, dev) == 0 &&
      mem(&bytes, dev) == 0)
    out = std::string(buf) + ", " + std::to_string(bytes >> 20) + " MiB";
  dlclose(lib);
  return out;
}
#endif

}  // namespace detail

/// One line saying where kernels run: "cpu", "gpu 0 (NVIDIA H200, 143771 MiB)", or
/// "gpu (emulated on the host)".
inline std::string device_description() {
  const auto& s = detail::device_state();
  if (s.active == Device::cpu) return "cpu";
  if (s.emulated) return "gpu (emulated on the host)";
  std::string d = "gpu " + std::to_string(s.number);
#if DIFFUSE_OFFLOAD_ENABLED
  if (std::string c = detail::cuda_device_description(s.number); !c.empty()) d += " (" + c + ")";
#endif
  return d;
}

/// Sets the device for its lifetime and restores the previous one (tests, benchmarks).
class DeviceScope {
 public:
  /// Selects `choice` as select_device does.
  explicit DeviceScope(std::string_view choice) : saved_(detail::device_state()) { select_device(choice); }
  ~DeviceScope() { detail::device_state() = saved_; }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  detail::DeviceState saved_;
};

namespace detail {

// The device copies of the host emulation (emulate_device_on_host): separate host memory
// per mapped block, so that kernels and host code see different data as they would with a
// GPU, and a missing update_host / update_device shows in the tests as a wrong value.
struct ShadowBlock {
  std::size_t bytes;
  char* copy;
};
struct ShadowMemory {
  std::mutex mutex;
  std::map<std::uintptr_t, ShadowBlock> blocks;  // by host start address
};
inline ShadowMemory& shadow_memory() {
  static ShadowMemory m;
  return m;
}
// The emulated device address of host address p, or null when p lies in no mapped block.
inline char* shadow_address(const void* p) {
  auto& m = shadow_memory();
  const std::lock_guard lock(m.mutex);
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  auto it = m.blocks.upper_bound(a);
  if (it == m.blocks.begin()) return nullptr;
  --it;
  return a < it->first + it->second.bytes ? it->second.copy + (a - it->first) : nullptr;
}

// Device memory that mirrors host storage (`target enter data`): the OpenMP runtime keeps
// the pair, so a host address names its device copy. All no-ops on the CPU.
inline void device_map(void* p, std::size_t bytes) {
#if DIFFUSE_OFFLOAD_ENABLED
  if (device_state().emulated) {
    void* copy = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!copy) throw std::bad_alloc();
    std::memcpy(copy, p, bytes);
    auto& m = shadow_memory();
    const std::lock_guard lock(m.mutex);
    m.blocks[reinterpret_cast<std::uintptr_t>(p)] = {bytes, static_cast<char*>(copy)};
    return;
  }
  char* c = static_cast<char*>(p);
  const int dev = device_number();
  (void)c;  // GCC 12 does not count a use in a map clause
  DIFFUSE_PRAGMA(omp target enter data map(to : c[0:bytes]) device(dev))
#else
  (void)p, (void)bytes;
#endif
}
inline void device_unmap(void* p, std::size_t bytes, int dev) noexcept {
#if DIFFUSE_OFFLOAD_ENABLED
  {
    auto& m = shadow_memory();
    const std::lock_guard lock(m.mutex);
    if (auto it = m.blocks.find(reinterpret_cast<std::uintptr_t>(p)); it != m.blocks.end()) {
      std::free(it->second.copy);
      m.blocks.erase(it);
      return;
    }
  }
  char* c = static_cast<char*>(p);
  (void)c;
  DIFFUSE_PRAGMA(omp target exit data map(delete : c[0:bytes]) device(dev))
#else
  (void)p, (void)bytes, (void)dev;
#endif
}

/// The device address of host address `p` (which must lie in mapped storage; else
/// DeviceError). The host address itself on the CPU; the separate copy in emulation.
template <class T>
T* device_address(T* p) {
#if DIFFUSE_OFFLOAD_ENABLED
  if (!device_memory() || p == nullptr) return p;
  const int dev = device_number();
  char* shadow = device_state().emulated ? shadow_address(p) : nullptr;
  if (device_state().emulated ? shadow == nullptr : !omp_target_is_present(const_cast<std::remove_const_t<T>*>(p), dev))
    throw DeviceError("diffuse: a tensor used on the GPU was not made on it (select the device before "
                      "creating tensors and models)");
  if (shadow) return reinterpret_cast<T*>(shadow);
  T* q = p;
  DIFFUSE_PRAGMA(omp target data use_device_ptr(q) device(dev))
  { p = q; }
  return p;
#else
  return p;
#endif
}

/// Work items of one launch below which one warp does it all. How launch() spreads the
/// work comes from measurements on an H200 with GCC 12 (docs/gpu.md): a kernel's start-up
/// grows with its teams and their threads (20-100 us for one warp, 75-110 us for 64
/// one-warp teams, 190-300 us for the runtime's default number, 240-730 us with `parallel`
/// inside the teams), so small work runs on one warp (`target simd`), light work on 64 one-warp
/// teams, and only heavy work on as many one-warp teams as the runtime likes. (GCC maps
/// OpenMP threads to warps and `simd` lanes to a warp's threads: every loop has `simd`.)
inline constexpr std::int64_t one_warp_work = std::int64_t{1} << 16;

/// Calls f(i) for i in [0, n) on the device, `cost` multiply-adds (or loads) per item.
/// f must be trivially copyable (it is copied to the device) and touch item i only.
/// Throws DeviceError for n of 2^31 or more (32-bit indices).
template <class F>
void launch(LaunchKind kind, std::int64_t n, std::int64_t cost, const F& f) {
  if (n <= 0) return;
  if (n > std::int64_t{0x7fffffff})
    throw DeviceError("diffuse::detail::launch: " + std::to_string(n) + " work items (at most 2^31 - 1)");
  const LaunchTimer timer(kind);
  const int count = static_cast<int>(n);
  const int dev = device_number();
  (void)dev;
  if (n * cost <= one_warp_work) {
    DIFFUSE_TARGET(target simd firstprivate(f) device(dev))
    for (int i = 0; i < count; ++i) f(i);
  } else if (cost <= 64) {
    DIFFUSE_TARGET(target teams distribute simd num_teams(64) firstprivate(f) device(dev))
    for (int i = 0; i < count; ++i) f(i);
  } else {
    DIFFUSE_TARGET(target teams distribute simd firstprivate(f) device(dev))
    for (int i = 0; i < count; ++i) f(i);
  }
}

/// Device addresses for what one GPU operation reads: tensors made on the GPU by their
/// device address, anything else (a small host array: per-image sigmas, a std::vector)
/// by a device copy made now and freed with the staging object. On the CPU and in
/// emulation every address is returned as it is.
class DeviceStaging {
 public:
  DeviceStaging() = default;
  DeviceStaging(const DeviceStaging&) = delete;
  DeviceStaging& operator=(const DeviceStaging&) = delete;
  ~DeviceStaging() {
#if DIFFUSE_OFFLOAD_ENABLED
    for (void* b : blocks_) device_state().emulated ? std::free(b) : omp_target_free(b, device_number());
#endif
  }
  /// The device address of the `count` elements at `p`.
  template <class T>
  T* operator()(T* p, std::size_t count) {
#if DIFFUSE_OFFLOAD_ENABLED
    if (!device_memory() || p == nullptr) return p;
    const int dev = device_number();
    auto* host = const_cast<std::remove_const_t<T>*>(p);
    if (device_state().emulated) {
      if (shadow_address(host)) return device_address(p);
      void* d = std::malloc(count * sizeof(T) + 1);
      if (!d) throw std::bad_alloc();
      blocks_.push_back(d);
      std::memcpy(d, host, count * sizeof(T));
      return static_cast<T*>(d);
    }
    if (omp_target_is_present(host, dev)) return device_address(p);
    void* d = omp_target_alloc(count * sizeof(T), dev);
    if (!d) throw DeviceError("diffuse: out of GPU memory (" + std::to_string(count * sizeof(T)) + " bytes)");
    blocks_.push_back(d);
    omp_target_memcpy(d, host, count * sizeof(T), 0, 0, dev, omp_get_initial_device());
    return static_cast<T*>(d);
#else
    (void)count;
    return p;
#endif
  }

 private:
  std::vector<void*> blocks_;
};

// Copies `bytes` at host address `p` between the host and the device copy: host -> GPU
// when `to_device`, else GPU -> host. A no-op without device memory.
inline void device_update(const void* p, std::size_t bytes, bool to_device) {
#if DIFFUSE_OFFLOAD_ENABLED
  if (!device_memory() || bytes == 0) return;
  if (device_state().emulated) {
    if (char* d = shadow_address(p)) to_device ? std::memcpy(d, p, bytes) : std::memcpy(const_cast<void*>(p), d, bytes);
    return;
  }
  char* c = static_cast<char*>(const_cast<void*>(p));
  const int dev = device_number();
  if (to_device) {
    DIFFUSE_PRAGMA(omp target update to(c[0:bytes]) device(dev))
  } else {
    DIFFUSE_PRAGMA(omp target update from(c[0:bytes]) device(dev))
  }
#else
  (void)p, (void)bytes, (void)to_device;
#endif
}

}  // namespace detail

/// Copies `count` elements at host address `p` (inside a tensor made on the GPU) from
/// the GPU to the host. A no-op on the CPU.
template <class T>
void update_host(T* p, std::size_t count) {
  detail::device_update(p, count * sizeof(T), false);
}

/// Copies `count` elements at host address `p` (inside a tensor made on the GPU) from
/// the host to the GPU, after host code wrote them. A no-op on the CPU.
template <class T>
void update_device(const T* p, std::size_t count) {
  detail::device_update(p, count * sizeof(T), true);
}

}  // namespace diffuse
