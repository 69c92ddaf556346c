// The index and size type of the kernels, apart from the GEMM engine so that a kernel or
// reference twin that needs only the type does not pull in the engine (and xsimd).
#pragma once

#include <cstddef>

namespace diffuse::kernels {

/// Index and size type of all kernels (signed: differences and strides are natural).
using index_t = std::ptrdiff_t;

}  // namespace diffuse::kernels
