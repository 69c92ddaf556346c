// diffuse's tensor core in one include: compile-time-shaped tensors and views,
// fused element-wise expressions, reductions and counter-based random numbers.
#pragma once

#include "diffuse/core/assign.hpp"
#include "diffuse/core/error.hpp"
#include "diffuse/core/expr.hpp"
#include "diffuse/core/functors.hpp"
#include "diffuse/core/ops.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/core/random.hpp"
#include "diffuse/core/reduce.hpp"
#include "diffuse/core/shape.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/version.hpp"
