# cmake -DPROGRAMS="a;b" -P expect_no_sentencepiece.cmake
# Fails when any program has libsentencepiece among its (transitive) dependencies: only the
# plugin libcomba_sentencepiece may link it (see io/src/sentencepiece_abi.h).
foreach(program IN LISTS PROGRAMS)
  execute_process(COMMAND ldd ${program} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT code EQUAL 0)
    message(FATAL_ERROR "ldd ${program} failed (${code}): ${err}")
  endif()
  if(out MATCHES "libsentencepiece")
    message(FATAL_ERROR "${program} depends on libsentencepiece:\n${out}")
  endif()
  message("${program}: no libsentencepiece")
endforeach()
