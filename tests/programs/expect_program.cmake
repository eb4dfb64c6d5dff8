# cmake -DPROGRAM=<path> -DARGS="a;b;c" -DEXPECTED=<exit status> [-DMATCH=<regex>]
#       [-DNO_MATCH=<regex>] -P expect_program.cmake
# Runs PROGRAM and fails unless it exits with EXPECTED, its output (stdout and stderr)
# matches MATCH and does not match NO_MATCH. ctest's own PASS_REGULAR_EXPRESSION ignores
# the exit status, and WILL_FAIL accepts a crash as well as a clean error.
execute_process(COMMAND ${PROGRAM} ${ARGS} RESULT_VARIABLE code OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
set(text "${out}${err}")
message("${text}")
if(NOT code STREQUAL "${EXPECTED}")
  message(FATAL_ERROR "${PROGRAM} exited with ${code}, expected ${EXPECTED}")
endif()
if(NOT "${MATCH}" STREQUAL "" AND NOT text MATCHES "${MATCH}")
  message(FATAL_ERROR "the output does not match: ${MATCH}")
endif()
if(NOT "${NO_MATCH}" STREQUAL "" AND text MATCHES "${NO_MATCH}")
  message(FATAL_ERROR "the output matches what it must not: ${NO_MATCH}")
endif()
