# Finds what the diffuse target links to: xsimd, OpenMP and nlohmann_json.
# Used by the project's own CMakeLists.txt and by the installed diffuseConfig.cmake.

# Debian's xsimd 8 exports a target that links to `xtl`, which is not installed with it;
# linking then fails with "cannot find -lxtl". xsimd itself does not need xtl, so drop
# the dangling name unless a real xtl target exists.
macro(diffuse_fix_xsimd_target)
  if(TARGET xsimd AND NOT TARGET xtl)
    get_target_property(_diffuse_xsimd_libs xsimd INTERFACE_LINK_LIBRARIES)
    if(_diffuse_xsimd_libs)
      list(REMOVE_ITEM _diffuse_xsimd_libs xtl)
      set_target_properties(xsimd PROPERTIES INTERFACE_LINK_LIBRARIES "${_diffuse_xsimd_libs}")
    endif()
  endif()
endmacro()

# Finds the dependencies and stops with the Debian package to install when one is missing.
macro(diffuse_find_dependencies)
  find_package(xsimd 8 QUIET)
  if(NOT xsimd_FOUND)
    message(FATAL_ERROR
      "diffuse needs xsimd 8 or newer, which was not found.\n"
      "On Debian or Ubuntu: apt-get install libxsimd-dev")
  endif()
  diffuse_fix_xsimd_target()
  find_package(OpenMP QUIET COMPONENTS CXX)
  if(NOT OpenMP_CXX_FOUND)
    message(FATAL_ERROR
      "diffuse needs OpenMP for C++, which was not found for ${CMAKE_CXX_COMPILER_ID}.\n"
      "On Debian or Ubuntu: apt-get install libgomp1 (g++) or libomp-dev (clang++)")
  endif()
  find_package(nlohmann_json 3 QUIET)
  if(NOT nlohmann_json_FOUND)
    message(FATAL_ERROR
      "diffuse needs nlohmann_json 3 (JSON for safetensors headers), which was not found.\n"
      "On Debian or Ubuntu: apt-get install nlohmann-json3-dev")
  endif()
endmacro()

# An imported target for a library found by find_library / find_path (once).
macro(diffuse_import_library target library include_dir)
  if(NOT TARGET ${target})
    add_library(${target} UNKNOWN IMPORTED)
    set_target_properties(${target} PROPERTIES IMPORTED_LOCATION "${library}" INTERFACE_INCLUDE_DIRECTORIES "${include_dir}")
  endif()
endmacro()

# Finds what diffuse::io (image files, IDX data sets) links to: zlib, libspng (PNG, with
# its checksums verified) and Debian's stb library (other formats, writing). Sets
# DIFFUSE_IO_FOUND and, when found, the imported targets diffuse::stb and diffuse::spng.
# With REQUIRED, stops with the Debian packages to install.
macro(diffuse_find_io_dependencies)
  cmake_parse_arguments(_diffuse_io "REQUIRED" "" "" ${ARGN})
  find_package(ZLIB QUIET)
  find_path(DIFFUSE_STB_INCLUDE_DIR stb/stb_image.h)
  find_library(DIFFUSE_STB_LIBRARY NAMES stb)
  find_path(DIFFUSE_SPNG_INCLUDE_DIR spng.h)
  find_library(DIFFUSE_SPNG_LIBRARY NAMES spng)
  if(ZLIB_FOUND AND DIFFUSE_STB_INCLUDE_DIR AND DIFFUSE_STB_LIBRARY AND DIFFUSE_SPNG_INCLUDE_DIR AND DIFFUSE_SPNG_LIBRARY)
    set(DIFFUSE_IO_FOUND TRUE)
    diffuse_import_library(diffuse::stb "${DIFFUSE_STB_LIBRARY}" "${DIFFUSE_STB_INCLUDE_DIR}")
    diffuse_import_library(diffuse::spng "${DIFFUSE_SPNG_LIBRARY}" "${DIFFUSE_SPNG_INCLUDE_DIR}")
  else()
    set(DIFFUSE_IO_FOUND FALSE)
    if(_diffuse_io_REQUIRED)
      message(FATAL_ERROR
        "diffuse::io (images and data sets) needs zlib, libspng and stb, which were not all found.\n"
        "On Debian or Ubuntu: apt-get install zlib1g-dev libspng-dev libstb-dev")
    endif()
  endif()
endmacro()

# Finds what diffuse::eval (the Fréchet distance, metrics/frechet.hpp) links to: Eigen 3
# for the symmetric eigendecompositions. Sets DIFFUSE_EVAL_FOUND; with REQUIRED, stops
# with the Debian package to install.
macro(diffuse_find_eval_dependencies)
  cmake_parse_arguments(_diffuse_eval "REQUIRED" "" "" ${ARGN})
  find_package(Eigen3 3.3 QUIET NO_MODULE)
  set(DIFFUSE_EVAL_FOUND ${Eigen3_FOUND})
  if(NOT Eigen3_FOUND AND _diffuse_eval_REQUIRED)
    message(FATAL_ERROR
      "diffuse::eval (the Fréchet distance) needs Eigen 3, which was not found.\n"
      "On Debian or Ubuntu: apt-get install libeigen3-dev")
  endif()
endmacro()
