// Checking errors in tests: what a call throws, and that it names what it should (the
// argument, key or flag the check must report).
#pragma once
#include <gtest/gtest.h>

#include <exception>
#include <functional>
#include <string>

namespace comba::testing {

// The message of the exception fn() throws, or "(no error)".
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

// Expects fn() to throw an E (c10::Error for TORCH_CHECKs) whose message contains `needle`;
// another exception type propagates and fails the test.
template <class E = std::exception>
void expect_error_mentioning(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected an error mentioning " << needle;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace comba::testing
