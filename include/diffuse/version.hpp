// The library's version, and what the including program was compiled for.
#pragma once

#include <string>

#include "diffuse/core/simd.hpp"

#define DIFFUSE_VERSION_MAJOR 0
#define DIFFUSE_VERSION_MINOR 1
#define DIFFUSE_VERSION_PATCH 0

namespace diffuse {

inline constexpr const char* version = "0.1.0";

/// The instruction set xsimd targets in this translation unit (chosen by the
/// compiler flags, e.g. -march=native), such as "avx512bw" or "sse2".
inline std::string instruction_set() { return xsimd::default_arch::name(); }

}  // namespace diffuse
