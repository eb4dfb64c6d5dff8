# python_torch_ops when CMake found no Python interpreter: a skip, unless
# COMBA_REQUIRE_PYTHON=1 says the Python check must run.
if("$ENV{COMBA_REQUIRE_PYTHON}" STREQUAL "" OR "$ENV{COMBA_REQUIRE_PYTHON}" STREQUAL "0")
  message("no Python interpreter: skipped")
else()
  message(FATAL_ERROR "COMBA_REQUIRE_PYTHON=1 but CMake found no Python interpreter")
endif()
