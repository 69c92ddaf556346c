/// \file
/// The library's version, and what the including program was compiled for.
#pragma once

#include <string>

#include "diffuse/core/simd.hpp"

#define DIFFUSE_VERSION_MAJOR 0  ///< Major version (incompatible changes).
#define DIFFUSE_VERSION_MINOR 1  ///< Minor version (compatible additions).
#define DIFFUSE_VERSION_PATCH 0  ///< Patch version (fixes).

/// Header-only C++20 diffusion models. This namespace holds the tensor core (shapes,
/// tensors, fused expressions, reductions, random numbers, threading); the nested ones
/// hold the kernels, layers, diffusion, training, metrics and file formats.
namespace diffuse {

/// The library's version, "major.minor.patch".
inline constexpr const char* version = "0.1.0";

/// The instruction set xsimd targets in this translation unit (chosen by the
/// compiler flags, e.g. -march=native), such as "avx512bw" or "sse2".
inline std::string instruction_set() { return xsimd::default_arch::name(); }

}  // namespace diffuse
