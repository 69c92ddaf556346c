// The float GEMM and convolution kernels for every test program, compiled once (the test
// units are compiled with DIFFUSE_EXTERN_FLOAT_KERNELS: tests/CMakeLists.txt).
#include <diffuse/kernels/float_instances.hpp>
