# Consumer test (run by ctest through `cmake -P`).
# 1. install the configured build tree into WORK_DIR/prefix;
# 2. check that every header of the source tree was installed;
# 3. configure, build and run project/ with find_package(diffuse) from that prefix;
# 4. the same with add_subdirectory on the source tree.
cmake_minimum_required(VERSION 3.21)

function(run_step what)
  execute_process(COMMAND ${ARGN} WORKING_DIRECTORY ${WORK_DIR} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer test: ${what} failed (${rc}):\n${out}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
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
foreach(f diffuseConfig.cmake diffuseConfigVersion.cmake diffuseTargets.cmake)
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
  run_step("run (${mode})" ${build}/consumer)
  if(NOT step_output MATCHES "consumer ok")
    message(FATAL_ERROR "consumer test (${mode}): unexpected output:\n${step_output}")
  endif()
  message(STATUS "${mode}: ${step_output}")
endforeach()
