# cmake -DPROGRAM=<path> -DARGS="a;b;c" [-DEXPECTED=<code>] [-DEXPECT_OUTPUT=<regex>]
#       -P expect_clean_failure.cmake
# Passes when PROGRAM fails the way a failed check should end a program: an exit status
# (EXPECTED, or any of 1-125), never a signal (SIGABRT is what a LibTorch check did when
# SentencePiece's flags overwrote c10's), and output matching EXPECT_OUTPUT when given.
execute_process(COMMAND ${PROGRAM} ${ARGS} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT code MATCHES "^[0-9]+$" OR code EQUAL 0 OR code GREATER 125)
  message(FATAL_ERROR "${PROGRAM} ended with \"${code}\", expected an error exit status")
endif()
if(DEFINED EXPECTED AND NOT code EQUAL EXPECTED)
  message(FATAL_ERROR "${PROGRAM} exited with ${code}, expected ${EXPECTED}")
endif()
if(DEFINED EXPECT_OUTPUT AND NOT "${out}${err}" MATCHES "${EXPECT_OUTPUT}")
  message(FATAL_ERROR "the output does not match \"${EXPECT_OUTPUT}\"")
endif()
