# Finds what the diffuse target links to: xsimd and OpenMP.
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
endmacro()
