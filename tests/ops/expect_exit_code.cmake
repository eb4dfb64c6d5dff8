# cmake -DEXPECTED=<code> -DPROGRAM=<path> -DARGS="a;b;c" -P expect_exit_code.cmake
# Runs PROGRAM and fails unless it exits with EXPECTED (ctest's WILL_FAIL accepts any
# non-zero code, including a crash or a usage error).
execute_process(COMMAND ${PROGRAM} ${ARGS} RESULT_VARIABLE code OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
message("${out}${err}")
if(NOT code STREQUAL "${EXPECTED}")
  message(FATAL_ERROR "${PROGRAM} exited with ${code}, expected ${EXPECTED}")
endif()
