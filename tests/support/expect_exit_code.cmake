# cmake -DPROGRAM=<path> -DARGS="a;b;c" [-DEXPECTED=<code>] [-DMATCH=<regex>]
#       [-DNO_MATCH=<regex>] -P expect_exit_code.cmake
# Runs PROGRAM and fails unless
#   - it exits with EXPECTED (ctest's WILL_FAIL accepts any non-zero code, a crash or a
#     usage error too), or, with EXPECTED empty or unset, with an error status 1-125: a
#     failed check ends a program that way, never by a signal (SIGABRT is what a LibTorch
#     check did when SentencePiece's flags overwrote c10's);
#   - its output (stdout and stderr) matches MATCH and does not match NO_MATCH, when given,
#     so that the failure is the one meant.
# ctest's own PASS_REGULAR_EXPRESSION ignores the exit status.
execute_process(COMMAND ${PROGRAM} ${ARGS} RESULT_VARIABLE code OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
set(text "${out}${err}")
message("${text}")
if("${EXPECTED}" STREQUAL "")
  if(NOT code MATCHES "^[0-9]+$" OR code EQUAL 0 OR code GREATER 125)
    message(FATAL_ERROR "${PROGRAM} ended with \"${code}\", expected an error exit status")
  endif()
elseif(NOT code STREQUAL "${EXPECTED}")
  message(FATAL_ERROR "${PROGRAM} exited with ${code}, expected ${EXPECTED}")
endif()
if(NOT "${MATCH}" STREQUAL "" AND NOT text MATCHES "${MATCH}")
  message(FATAL_ERROR "${PROGRAM}'s output does not match: ${MATCH}")
endif()
if(NOT "${NO_MATCH}" STREQUAL "" AND text MATCHES "${NO_MATCH}")
  message(FATAL_ERROR "${PROGRAM}'s output matches what it must not: ${NO_MATCH}")
endif()
