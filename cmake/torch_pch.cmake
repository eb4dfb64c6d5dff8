# Precompiled <torch/torch.h>. Parsing LibTorch's headers is most of a C++ file's compile
# time here (~35 s of ~45 s at -O3 on one core), so every torch-using C++ file reuses one of
# three precompiled headers: libraries (-fPIC), tests (-fPIE, with GoogleTest), programs
# (-fPIE). A file whose flags do not match its header compiles from the plain header
# instead (GCC's rule), so this changes build time only. CUDA sources are not affected.
option(COMBA_PRECOMPILED_HEADERS "Precompile the LibTorch headers (faster cold builds)" ON)

if(COMBA_PRECOMPILED_HEADERS)
  set(_comba_pch_stub ${CMAKE_CURRENT_LIST_DIR}/pch_stub.cpp)
  add_library(comba_pch_library OBJECT ${_comba_pch_stub})
  target_link_libraries(comba_pch_library PRIVATE comba_torch)
  target_precompile_headers(comba_pch_library PRIVATE <torch/torch.h>)

  add_executable(comba_pch_program ${_comba_pch_stub})
  target_link_libraries(comba_pch_program PRIVATE comba_torch)
  target_precompile_headers(comba_pch_program PRIVATE <torch/torch.h>)
endif()

# comba_torch_pch(target): the target's C++ files reuse the precompiled header of its kind
# (a library, a program, or with TEST a GoogleTest executable). For torch-using targets only:
# a torch-free target would gain nothing and need LibTorch's include paths.
function(comba_torch_pch target)
  cmake_parse_arguments(ARG "TEST" "" "" ${ARGN})
  if(NOT COMBA_PRECOMPILED_HEADERS)
    return()
  endif()
  get_target_property(type ${target} TYPE)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Winvalid-pch>)
  if(ARG_TEST)
    if(NOT TARGET comba_pch_test)
      add_executable(comba_pch_test ${_comba_pch_stub})
      target_link_libraries(comba_pch_test PRIVATE comba_torch GTest::gtest)
      target_precompile_headers(comba_pch_test PRIVATE <torch/torch.h> <gtest/gtest.h>)
    endif()
    target_precompile_headers(${target} REUSE_FROM comba_pch_test)
  elseif(type STREQUAL "EXECUTABLE")
    target_precompile_headers(${target} REUSE_FROM comba_pch_program)
  else()
    target_precompile_headers(${target} REUSE_FROM comba_pch_library)
  endif()
endfunction()

# comba_test_torch_pch(target LIBS...): comba_torch_pch(target TEST) when the test links a
# torch-using library of ours (the torch-free tests stay without LibTorch's headers).
function(comba_test_torch_pch target)
  if("${ARGN}" MATCHES "(^|;)(comba_(ops|nn|io|train|torch|gradcheck|test_support)|Comba::[a-z]+)($|;)")
    comba_torch_pch(${target} TEST)
  endif()
endfunction()
