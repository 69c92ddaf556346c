# Consumer test (run by ctest through `cmake -P`).
# 1. install the configured build tree into WORK_DIR/prefix;
# 2. check that every header of the source tree was installed;
# 3. configure, build and run project/ with find_package(diffuse) from that prefix;
# 4. the same with add_subdirectory on the source tree;
# 5. compile and run project/main.cpp with the flags of `pkg-config --cflags --libs`
#    for the installed diffuse.pc and diffuse-io.pc (PKG_CONFIG_PATH into the prefix).
cmake_minimum_required(VERSION 3.21)

function(run_step what)
  execute_process(COMMAND ${ARGN} WORKING_DIRECTORY ${WORK_DIR} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer test: ${what} failed (${rc}):\n${out}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

# Runs a built consumer program, which prints "consumer ok" when all went well.
function(run_consumer what program)
  run_step("run (${what})" ${program})
  if(NOT step_output MATCHES "consumer ok")
    message(FATAL_ERROR "consumer test (${what}): unexpected output:\n${step_output}")
  endif()
  message(STATUS "${what}: ${step_output}")
endfunction()

set(prefix ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
run_step("install" ${CMAKE_COMMAND} --install ${DIFFUSE_BINARY_DIR} --prefix ${prefix})

file(GLOB_RECURSE headers RELATIVE ${DIFFUSE_SOURCE_DIR}/include ${DIFFUSE_SOURCE_DIR}/include/*.hpp)
foreach(h ${headers})
  if(NOT EXISTS ${prefix}/include/${h})
    message(FATAL_ERROR "consumer test: header ${h} is missing from the install")
  endif()
endforeach()
foreach(f diffuseConfig.cmake diffuseConfigVersion.cmake diffuseTargets.cmake diffuseProgramsTargets.cmake diffuse.pc diffuse-io.pc)
  file(GLOB_RECURSE found ${prefix}/*/${f})
  if(NOT found)
    message(FATAL_ERROR "consumer test: ${f} is missing from the install")
  endif()
endforeach()

foreach(mode find_package add_subdirectory)
  set(build ${WORK_DIR}/build-${mode})
  run_step("configure (${mode})" ${CMAKE_COMMAND}
    -S ${DIFFUSE_SOURCE_DIR}/tests/consumer/project -B ${build}
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=${CXX}
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
    -DCONSUMER_MODE=${mode} -DDIFFUSE_SOURCE_DIR=${DIFFUSE_SOURCE_DIR})
  run_step("build (${mode})" ${CMAKE_COMMAND} --build ${build})
  run_consumer(${mode} ${build}/consumer)
  run_consumer("${mode}, programs" ${build}/consumer_programs)
endforeach()

# A build without CMake: only the compiler and pkg-config.
file(GLOB_RECURSE pc_file ${prefix}/*/pkgconfig/diffuse.pc)
get_filename_component(pc_dir "${pc_file}" DIRECTORY)
set(ENV{PKG_CONFIG_PATH} "${pc_dir}")
run_step("pkg-config" ${PKG_CONFIG} --cflags --libs diffuse diffuse-io)
string(STRIP "${step_output}" pc_line)
separate_arguments(pc_flags UNIX_COMMAND "${pc_line}")
set(build ${WORK_DIR}/build-pkg-config)
file(MAKE_DIRECTORY ${build})
run_step("build (pkg-config: ${pc_line})" ${CXX} -O2 ${DIFFUSE_SOURCE_DIR}/tests/consumer/project/main.cpp
  -o ${build}/consumer ${pc_flags})
run_consumer("pkg-config: ${pc_line}" ${build}/consumer)
