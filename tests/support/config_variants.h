// Walks CombaConfig's field list (nn/config.h) and yields, for every field, a config that
// differs from a base in that field alone, with a value that validate() accepts: what a
// consumer of the list (config.json, YAML, the architecture checks) must notice.
#pragma once
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "comba/nn/config.h"

namespace comba::testing {

namespace detail {

// Candidate values, tried in order; the first valid one that differs is taken. The
// doubled steps keep derived sizes apart (hidden_ratio 4 -> 9 changes the 256-rounded
// MLP width; num_v_heads 0 -> 4 differs from num_heads = 2); 2v keeps divisors (num_heads
// 2 -> 4 with num_v_heads 4).
inline std::vector<int64_t> candidates(int64_t v) { return {2 * v + 3, 2 * v + 4, 2 * v + 5, 2 * v}; }
inline std::vector<double> candidates(double v) { return {2 * v + 1, 2 * v + 2}; }
inline std::vector<bool> candidates(bool v) { return {!v}; }
inline std::vector<std::string> candidates(const std::string&) {
  return std::vector<std::string>(nn::kAttnModes.begin(), nn::kAttnModes.end());
}

inline bool valid(const nn::CombaConfig& c) {
  try {
    c.validate();
    return true;
  } catch (const c10::Error&) {
    return false;
  }
}

}  // namespace detail

struct ChangedField {
  std::string name;    // the member (YAML model.<name>)
  std::string hf_key;  // config.json key
  nn::FieldRole role;
  nn::CombaConfig config;  // the base with this field changed
};

// One entry per field of the list; a field with no valid other value fails the test.
inline std::vector<ChangedField> changed_fields(const nn::CombaConfig& base) {
  std::vector<ChangedField> out;
  nn::for_each_field([&](const auto& field) {
    for (const auto& value : detail::candidates(base.*field.member)) {
      nn::CombaConfig c = base;
      c.*field.member = value;
      if (c.*field.member == base.*field.member || !detail::valid(c)) continue;
      out.push_back({field.name, field.hf_key, field.role, c});
      return;
    }
    ADD_FAILURE() << "no valid other value for field " << field.name;
  });
  return out;
}

// The number of fields in the list.
inline size_t config_field_count() {
  size_t n = 0;
  nn::for_each_field([&](const auto&) { ++n; });
  return n;
}

}  // namespace comba::testing
