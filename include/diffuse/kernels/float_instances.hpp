// The float GEMM, convolution and GroupNorm kernels compiled once for a whole program.
//
// The tuned kernels are a large share of the machine code of any program that uses a UNet
// (in diffuse-train, about a fifth of each model's translation unit), and a header-only
// library compiles them again in every unit that calls them. A program of several units
// can compile them once: define DIFFUSE_EXTERN_FLOAT_KERNELS in every unit (the kernel
// headers then declare the float instantiations `extern template`), and include this
// header in exactly one unit, which defines them. Nothing else changes: the same
// functions run, and a program without the macro needs nothing of this.
//
//   target_compile_definitions(my-program PRIVATE DIFFUSE_EXTERN_FLOAT_KERNELS)
//   // float_kernels.cpp, one of my-program's sources:
//   #include <diffuse/kernels/float_instances.hpp>
#pragma once

#include "diffuse/kernels/conv2d.hpp"
#include "diffuse/kernels/gemm.hpp"
#include "diffuse/kernels/group_norm.hpp"

DIFFUSE_GEMM_FLOAT_INSTANCES()
DIFFUSE_CONV2D_FLOAT_INSTANCES()
DIFFUSE_GROUP_NORM_FLOAT_INSTANCES()
