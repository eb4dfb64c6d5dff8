// The problems config_from_yaml reports for a YAML text (empty: it loaded), and a search
// among them: what the config tests assert on.
#pragma once
#include <algorithm>
#include <string>
#include <vector>

#include "comba/train/config/config.h"

namespace comba::train::testing {

inline std::vector<std::string> problems_of(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    config_from_yaml(yaml, overrides);
  } catch (const ConfigError& e) {
    return e.problems();
  }
  return {};
}

inline bool contains(const std::vector<std::string>& problems, const std::string& text) {
  return std::any_of(problems.begin(), problems.end(),
                     [&](const std::string& p) { return p.find(text) != std::string::npos; });
}

}  // namespace comba::train::testing
