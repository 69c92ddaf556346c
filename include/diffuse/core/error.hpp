/// \file
/// How the tensor core reports errors.
///
/// Static extents are checked by the compiler. What only shows at run time (a batch
/// size, an index in a debug build) throws diffuse::ShapeError with a message that
/// names both sides.
#pragma once

#include <stdexcept>
#include <string>

namespace diffuse {

/// Thrown when run-time extents (the batch) of two operands disagree.
class ShapeError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

}  // namespace diffuse

/// 1 where the checks that cost something and only guard against programming errors
/// (index bounds) are on: in debug builds, and in builds that define DIFFUSE_CHECKS.
#if !defined(NDEBUG) || defined(DIFFUSE_CHECKS)
#define DIFFUSE_DEBUG_CHECKS 1
#else
#define DIFFUSE_DEBUG_CHECKS 0
#endif
