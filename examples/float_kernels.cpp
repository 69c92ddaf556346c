// The float GEMM and convolution kernels, compiled once for the whole program: the other
// units are compiled with DIFFUSE_EXTERN_FLOAT_KERNELS (examples/CMakeLists.txt).
#include <diffuse/kernels/float_instances.hpp>
