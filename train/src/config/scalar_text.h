// The spelling of a config scalar (YAML plain scalar or --set value): one set of rules for
// the scalar schema and for structured keys like model.attn. nullopt: not that type.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace comba::train {

std::optional<int64_t> parse_int(const std::string& text);   // decimal, optional '+'
std::optional<double> parse_double(const std::string& text);  // finite, no surrounding space
std::optional<bool> parse_bool(const std::string& text);      // true/yes/on, false/no/off, any case

}  // namespace comba::train
