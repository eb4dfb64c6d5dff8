# ctest script: install the build into a fresh prefix, check that the exported targets
# carry no absolute paths, configure + build examples/use_in_your_project against the
# installed package (a separate CMake project) and run it.
# Inputs (-D): BUILD_DIR, SOURCE_DIR, WORK_DIR, TORCH_DIR, GENERATOR.
foreach(var BUILD_DIR SOURCE_DIR WORK_DIR TORCH_DIR GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "install_package_test: -D${var}=... is required")
  endif()
endforeach()

function(run_step name)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${name} failed (${rc}):\n${out}\n${err}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/install)
run_step("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

file(GLOB_RECURSE target_files ${prefix}/*/cmake/Comba/CombaTargets*.cmake)
if(NOT target_files)
  message(FATAL_ERROR "no CombaTargets*.cmake under ${prefix}")
endif()
get_filename_component(torch_root ${TORCH_DIR}/../../.. ABSOLUTE)
foreach(file ${target_files})
  file(READ ${file} text)
  foreach(leak ${BUILD_DIR} ${SOURCE_DIR} ${torch_root})
    string(FIND "${text}" "${leak}" at)
    if(NOT at EQUAL -1)
      message(FATAL_ERROR "${file} contains the absolute path ${leak}")
    endif()
  endforeach()
endforeach()

set(consumer_build ${WORK_DIR}/use_in_your_project)
run_step("configure use_in_your_project" ${CMAKE_COMMAND}
  -S ${SOURCE_DIR}/examples/use_in_your_project -B ${consumer_build} -G ${GENERATOR}
  -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=${prefix}" -DTorch_DIR=${TORCH_DIR})
run_step("build use_in_your_project" ${CMAKE_COMMAND} --build ${consumer_build})
run_step("run use_comba" ${consumer_build}/use_comba)
message(STATUS "${step_output}")
string(FIND "${step_output}" "use_in_your_project: OK" ok)
if(ok EQUAL -1)
  message(FATAL_ERROR "use_comba did not report OK:\n${step_output}")
endif()
