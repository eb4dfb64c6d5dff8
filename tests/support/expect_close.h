// Comparing an operator run's named results with a reference run's (support/comba_case.h),
// each within a tolerance of its own: what the operator tests assert.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <iomanip>
#include <iostream>
#include <string>

#include "support/comba_case.h"

namespace comba::test {

// Tolerance of one named result given its fp64 reference.
using TolerancePolicy = std::function<double(const at::Tensor& reference)>;

inline TolerancePolicy fixed(double tolerance) {
  return [tolerance](const at::Tensor&) { return tolerance; };
}

// The forward results (o, final_state) of a run: what an inference run returns.
inline NamedTensors forward_results(NamedTensors results) {
  results.erase(std::remove_if(results.begin(), results.end(),
                               [](const auto& e) { return e.first != "o" && e.first != "final_state"; }),
                results.end());
  return results;
}

// Every result of `want` must be in `got` and within tolerance. Prints one line per result
// ("[comba-error] label name error tolerance") so a CI log shows the margins.
inline void expect_close(const NamedTensors& got, const NamedTensors& want, const TolerancePolicy& tolerance,
                         const std::string& label) {
  for (const auto& [name, reference] : want) {
    const auto it = std::find_if(got.begin(), got.end(), [&](const auto& entry) { return entry.first == name; });
    ASSERT_NE(it, got.end()) << label << ": operator result `" << name << "` missing";
    ASSERT_TRUE(it->second.defined()) << label << ": operator gave no `" << name << "`";
    ASSERT_EQ(it->second.sizes(), reference.sizes()) << label << ": shape of `" << name << "`";
    const double error = relative_error(it->second, reference);
    const double limit = tolerance(reference);
    std::cout << "[comba-error] " << label << ' ' << name << ' ' << std::scientific << std::setprecision(2) << error
              << " tol " << limit << std::defaultfloat << '\n';
    EXPECT_LE(error, limit) << label << ": `" << name << "` relative error " << error << " above " << limit;
  }
}

}  // namespace comba::test
