// Precision of the FP32 matrix products: FP32 throughout, or BF16 operands with FP32
// accumulation (AVX512-BF16 `vdpbf16ps`), like PyTorch's
// torch.set_float32_matmul_precision / torch.autocast("cpu", dtype=torch.bfloat16) for
// matmuls and convolutions. Tensors stay FP32: operands are rounded to BF16 while the
// kernels pack them, products are exact in FP32 and sums are FP32, so BF16 changes the
// operands' rounding (8 significant bits instead of 24) and nothing else.
//
// What it applies to: every float GEMM (kernels::gemm, gemm_batched) and the three passes
// of the convolutions. The element-wise work, the normalisations, softmax, the loss and the
// optimizer stay FP32 (mixed precision with FP32 master weights). double is always double.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>


/// 1 when this build carries the BF16 kernels: x86-64 with GCC or clang and 16-lane float
/// vectors (AVX-512 flags, e.g. -march=native on an AVX-512 CPU). Whether the CPU running
/// the program has AVX512-BF16 is checked at run time (bf16_available()).
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && defined(__AVX512F__)
#define DIFFUSE_BF16_KERNELS 1
#else
#define DIFFUSE_BF16_KERNELS 0
#endif

namespace diffuse::kernels {

/// Operand precision of the float matrix products (see the file comment).
enum class MatmulPrecision {
  fp32,  ///< FP32 operands, FP32 accumulation
  bf16,  ///< BF16 operands (round to nearest even), FP32 accumulation
};

/// "fp32" or "bf16".
inline const char* to_string(MatmulPrecision p) noexcept {
  return p == MatmulPrecision::bf16 ? "bf16" : "fp32";
}

/// Parses "fp32" or "bf16"; nullopt for anything else.
inline std::optional<MatmulPrecision> parse_matmul_precision(std::string_view s) noexcept {
  if (s == "fp32") return MatmulPrecision::fp32;
  if (s == "bf16") return MatmulPrecision::bf16;
  return std::nullopt;
}

/// Empty when the BF16 kernels can run here; otherwise why not (the build has no AVX-512
/// flags, or the CPU lacks AVX512-BF16, or DIFFUSE_DISABLE_BF16 is set in the environment:
/// the tests use it to exercise the fallback).
inline std::string bf16_unavailable_reason() {
#if DIFFUSE_BF16_KERNELS
  if (const char* e = std::getenv("DIFFUSE_DISABLE_BF16"); e && *e && std::string_view(e) != "0")
    return "DIFFUSE_DISABLE_BF16 is set";
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512bf16")) return "this CPU has no AVX512-BF16 instructions";
  return {};
#else
  return "this build has no BF16 kernels (they need x86-64 with AVX-512 flags, e.g. -march=native "
         "on an AVX-512 CPU)";
#endif
}

/// Whether MatmulPrecision::bf16 can be selected on this machine and build.
inline bool bf16_available() { return bf16_unavailable_reason().empty(); }

namespace detail {
inline std::atomic<MatmulPrecision>& matmul_precision_flag() noexcept {
  static std::atomic<MatmulPrecision> p{MatmulPrecision::fp32};
  return p;
}
}  // namespace detail

/// The precision the float GEMMs and convolutions use now (process-wide; fp32 at start).
inline MatmulPrecision matmul_precision() noexcept {
  return detail::matmul_precision_flag().load(std::memory_order_relaxed);
}

/// Selects the precision of the float GEMMs and convolutions for the whole process.
/// Throws std::runtime_error naming the reason when bf16 cannot run here (the setting is
/// then unchanged); callers that want a fallback catch it and stay in fp32.
/// Not to be changed while kernels run on other threads.
inline void set_matmul_precision(MatmulPrecision p) {
  if (p == MatmulPrecision::bf16) {
    if (std::string why = bf16_unavailable_reason(); !why.empty())
      throw std::runtime_error("BF16 matmul precision is not available: " + why);
  }
  detail::matmul_precision_flag().store(p, std::memory_order_relaxed);
}

/// Scoped precision: sets p on construction, restores the previous one on destruction.
class MatmulPrecisionScope {
 public:
  /// Throws as set_matmul_precision.
  explicit MatmulPrecisionScope(MatmulPrecision p) : old_(matmul_precision()) {
    set_matmul_precision(p);
  }
  ~MatmulPrecisionScope() { detail::matmul_precision_flag().store(old_, std::memory_order_relaxed); }
  MatmulPrecisionScope(const MatmulPrecisionScope&) = delete;
  MatmulPrecisionScope& operator=(const MatmulPrecisionScope&) = delete;

 private:
  MatmulPrecision old_;
};

/// float -> BF16 bits, round to nearest even (NaN stays NaN), as `vcvtneps2bf16` for
/// normal numbers (the instruction also flushes subnormal inputs to zero).
inline std::uint16_t to_bf16(float f) noexcept {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

/// BF16 bits -> float (exact).
inline float from_bf16(std::uint16_t h) noexcept {
  const std::uint32_t u = std::uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// f rounded to the nearest BF16 value, as a float (what the BF16 kernels multiply).
inline float round_to_bf16(float f) noexcept { return from_bf16(to_bf16(f)); }

}  // namespace diffuse::kernels
