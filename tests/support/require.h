// Skips that a GPU run must not take silently. Without a CUDA device the GPU tests skip,
// so a GPU machine whose build lost nvcc (or whose driver is gone) would still be green;
// COMBA_REQUIRE_GPU=1 (set by benchmarks/gpu_suite.sh) turns that skip into a failure.
#pragma once

#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <cstdlib>
#include <cstring>

namespace comba::test {

// True when the environment variable is set to anything but "" or "0".
inline bool env_switch_on(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' && std::strcmp(value, "0") != 0;
}

}  // namespace comba::test

// Use at the top of a GPU test body or SetUp(): skips without a CUDA device, or fails when
// COMBA_REQUIRE_GPU=1 says the device must be there.
#define COMBA_SKIP_WITHOUT_CUDA()                                                          \
  do {                                                                                     \
    if (!torch::cuda::is_available()) {                                                    \
      if (::comba::test::env_switch_on("COMBA_REQUIRE_GPU"))                               \
        FAIL() << "COMBA_REQUIRE_GPU=1 but no CUDA device (torch::cuda::is_available() "   \
                  "is false: no driver, no visible GPU, or LibTorch without CUDA)";        \
      GTEST_SKIP() << "no CUDA device";                                                    \
    }                                                                                      \
  } while (0)
