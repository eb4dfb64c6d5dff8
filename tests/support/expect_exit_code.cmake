# cmake -DEXPECTED=<code> -DPROGRAM=<path> -DARGS="a;b;c" [-DEXPECT_OUTPUT=<regex>]
#       -P expect_exit_code.cmake
# Runs PROGRAM and fails unless it exits with EXPECTED (ctest's WILL_FAIL accepts any
# non-zero code, including a crash or a usage error) and, when EXPECT_OUTPUT is given,
# unless its output matches that regex (the failure is the one meant, not another).
execute_process(COMMAND ${PROGRAM} ${ARGS} RESULT_VARIABLE code OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
message("${out}${err}")
if(NOT code STREQUAL "${EXPECTED}")
  message(FATAL_ERROR "${PROGRAM} exited with ${code}, expected ${EXPECTED}")
endif()
if(DEFINED EXPECT_OUTPUT AND NOT "${out}${err}" MATCHES "${EXPECT_OUTPUT}")
  message(FATAL_ERROR "${PROGRAM}'s output does not match: ${EXPECT_OUTPUT}")
endif()
