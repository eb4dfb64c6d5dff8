// ConfigSchema: YAML / --set text -> typed struct fields, with one error per problem
// naming the key path, what was expected and what came. The emitter is hand-written
// (maps and scalars only) so that the saved config reads back to the same values.
#include "comba/train/config/config_schema.h"

#include "scalar_text.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <map>
#include <sstream>
#include <stdexcept>

namespace comba::train {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string format_double(double v) {
  char buffer[64];
  const auto [ptr, ec] = std::to_chars(buffer, buffer + sizeof(buffer), v);
  std::string text(buffer, ptr);
  // Keep a float-looking spelling ("1.0", not "1") so the saved YAML says what it is.
  if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
  return text;
}

std::string format_bound(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

std::string node_kind(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Null: return "null";
    default: return quote_value(node.Scalar());
  }
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  std::stringstream in(path);
  std::string part;
  while (std::getline(in, part, '.')) parts.push_back(part);
  return parts;
}

std::string escape(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::optional<int64_t> parse_int(const std::string& text) {
  int64_t value = 0;
  const char* begin = text.data();
  const char* end = begin + text.size();
  if (begin != end && *begin == '+') ++begin;
  const auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || ptr != end || begin == end) return std::nullopt;
  return value;
}

std::optional<double> parse_double(const std::string& text) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text.front()))) return std::nullopt;
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isfinite(value)) return std::nullopt;
  return value;
}

std::optional<bool> parse_bool(const std::string& text) {
  const std::string t = lower(text);
  if (t == "true" || t == "yes" || t == "on") return true;
  if (t == "false" || t == "no" || t == "off") return false;
  return std::nullopt;
}

std::string quote_value(const std::string& text) {
  if (parse_double(text) || parse_bool(text)) return text;
  return "\"" + text + "\"";
}

bool Bounds::contains(double v) const {
  const bool above = min_inclusive ? v >= min : v > min;
  const bool below = max_inclusive ? v <= max : v < max;
  return above && below;
}

std::string Bounds::describe(bool integer) const {
  const std::string noun = integer ? "an integer" : "a number";
  const bool no_min = std::isinf(min);
  const bool no_max = std::isinf(max);
  if (no_min && no_max) return noun;
  if (no_max) {
    if (min == 0.0) return integer ? (min_inclusive ? "a non-negative integer" : "a positive integer")
                                   : (min_inclusive ? "a non-negative number" : "a positive number");
    return noun + (min_inclusive ? " >= " : " > ") + format_bound(min);
  }
  if (no_min) return noun + (max_inclusive ? " <= " : " < ") + format_bound(max);
  return noun + " in " + (min_inclusive ? "[" : "(") + format_bound(min) + ", " +
         format_bound(max) + (max_inclusive ? "]" : ")");
}

void ConfigSchema::add(const std::string& path, bool* target, const std::string& help) {
  fields_.push_back({path, "true or false", help, false,
                     [target](const std::string& text) {
                       const auto v = parse_bool(text);
                       if (v) *target = *v;
                       return v.has_value();
                     },
                     [target] { return std::string(*target ? "true" : "false"); }});
}

void ConfigSchema::add(const std::string& path, int64_t* target, Bounds bounds,
                       const std::string& help) {
  fields_.push_back({path, bounds.describe(true), help, false,
                     [target, bounds](const std::string& text) {
                       const auto v = parse_int(text);
                       if (!v || !bounds.contains(static_cast<double>(*v))) return false;
                       *target = *v;
                       return true;
                     },
                     [target] { return std::to_string(*target); }});
}

void ConfigSchema::add(const std::string& path, std::optional<int64_t>* target, Bounds bounds,
                       const std::string& help) {
  fields_.push_back({path, bounds.describe(true) + " or null", help, false,
                     [target, bounds](const std::string& text) {
                       if (text == "null" || text == "~" || text.empty()) {
                         target->reset();
                         return true;
                       }
                       const auto v = parse_int(text);
                       if (!v || !bounds.contains(static_cast<double>(*v))) return false;
                       *target = *v;
                       return true;
                     },
                     [target] { return *target ? std::to_string(**target) : std::string("null"); }});
}

void ConfigSchema::add(const std::string& path, double* target, Bounds bounds,
                       const std::string& help) {
  fields_.push_back({path, bounds.describe(false), help, false,
                     [target, bounds](const std::string& text) {
                       const auto v = parse_double(text);
                       if (!v || !bounds.contains(*v)) return false;
                       *target = *v;
                       return true;
                     },
                     [target] { return format_double(*target); }});
}

void ConfigSchema::add(const std::string& path, std::string* target,
                       std::vector<std::string> choices, const std::string& help) {
  std::string expected = "a string";
  if (!choices.empty()) {
    expected = "one of ";
    for (size_t i = 0; i < choices.size(); ++i) expected += (i ? ", " : "") + choices[i];
  }
  fields_.push_back({path, expected, help, true,
                     [target, choices](const std::string& text) {
                       if (!choices.empty() &&
                           std::find(choices.begin(), choices.end(), text) == choices.end()) {
                         return false;
                       }
                       *target = text;
                       return true;
                     },
                     [target] { return *target; }});
}

void ConfigSchema::add_node(const std::string& path,
                            std::function<std::vector<std::string>(const YAML::Node&)> set,
                            std::function<std::string()> get, const std::string& expected,
                            const std::string& help) {
  Field field{path, expected, help, false, [](const std::string&) { return false; }, std::move(get)};
  field.set_node = std::move(set);
  fields_.push_back(std::move(field));
}

const ConfigSchema::Field* ConfigSchema::find(const std::string& path) const {
  for (const auto& f : fields_) {
    if (f.path == path) return &f;
  }
  return nullptr;
}

bool ConfigSchema::has(const std::string& path) const { return find(path) != nullptr; }

std::string ConfigSchema::value(const std::string& path) const {
  const Field* field = find(path);
  if (!field) throw std::out_of_range(path + ": unknown key");
  return field->get();
}

std::vector<std::string> ConfigSchema::paths() const {
  std::vector<std::string> out;
  for (const auto& f : fields_) out.push_back(f.path);
  return out;
}

std::string ConfigSchema::known_keys_under(const std::string& prefix) const {
  std::vector<std::string> names;
  const std::string start = prefix.empty() ? "" : prefix + ".";
  for (const auto& f : fields_) {
    if (f.path.compare(0, start.size(), start) != 0) continue;
    const std::string rest = f.path.substr(start.size());
    const std::string name = rest.substr(0, rest.find('.'));
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  }
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i];
  return out;
}

std::vector<std::string> ConfigSchema::apply_scalar(const std::string& path,
                                                    const std::string& text) const {
  const Field* field = find(path);
  if (!field) {
    const auto dot = path.rfind('.');
    const std::string parent = dot == std::string::npos ? "" : path.substr(0, dot);
    const std::string known = known_keys_under(parent);
    if (known.empty()) return {path + ": unknown key"};
    return {path + ": unknown key (known keys" + (parent.empty() ? "" : " in " + parent) +
            ": " + known + ")"};
  }
  if (field->set_node) {
    return {path + ": expected " + field->expected +
            ", which --set cannot give (a structured value): write it in the YAML file"};
  }
  if (!field->set(text)) {
    return {path + ": expected " + field->expected + ", got " +
            (text.empty() ? std::string("null") : quote_value(text))};
  }
  return {};
}

void ConfigSchema::apply_node(const YAML::Node& node, const std::string& prefix,
                              std::vector<std::string>& errors) const {
  // yaml-cpp keeps every pair of a mapping, a repeated key too (lookups would see the
  // first, this loop the last): a key written twice is a mistake to report, not to guess.
  std::map<std::string, YAML::Mark> seen;
  for (const auto& entry : node) {
    const std::string key = entry.first.as<std::string>();
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    const YAML::Mark mark = entry.first.Mark();
    const auto [first, inserted] = seen.emplace(key, mark);
    if (!inserted) {
      std::string where;
      const YAML::Mark& before = first->second;
      if (!before.is_null() && !mark.is_null()) {
        where = before.line == mark.line
                    ? " (line " + std::to_string(mark.line + 1) + ", columns " +
                          std::to_string(before.column + 1) + " and " + std::to_string(mark.column + 1) + ")"
                    : " (lines " + std::to_string(before.line + 1) + " and " +
                          std::to_string(mark.line + 1) + ")";
      }
      errors.push_back(path + ": duplicate key" + where + "; keep one");
      continue;
    }
    const YAML::Node& value = entry.second;
    const Field* field = find(path);
    const bool is_section = !field && !known_keys_under(path).empty();
    if (is_section) {
      if (value.IsMap()) {
        apply_node(value, path, errors);
      } else {
        errors.push_back(path + ": expected a mapping of " + path + ".* keys, got " +
                         node_kind(value));
      }
      continue;
    }
    if (!field) {
      const auto more = apply_scalar(path, "");  // the "unknown key" message
      errors.insert(errors.end(), more.begin(), more.end());
      continue;
    }
    if (field->set_node) {
      const auto more = field->set_node(value);
      errors.insert(errors.end(), more.begin(), more.end());
      continue;
    }
    if (value.IsMap() || value.IsSequence()) {
      errors.push_back(path + ": expected " + field->expected + ", got " + node_kind(value));
      continue;
    }
    const auto more = apply_scalar(path, value.IsNull() ? "" : value.Scalar());
    errors.insert(errors.end(), more.begin(), more.end());
  }
}

std::vector<std::string> ConfigSchema::apply_yaml(const YAML::Node& root) const {
  std::vector<std::string> errors;
  if (root.IsNull()) return errors;
  if (!root.IsMap()) return {"<top level>: expected a mapping of sections, got " + node_kind(root)};
  apply_node(root, "", errors);
  return errors;
}

std::vector<std::string> ConfigSchema::apply_override(const std::string& assignment) const {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    return {"--set " + assignment + ": expected key.path=value"};
  }
  const std::string path = assignment.substr(0, eq);
  YAML::Node value;
  try {
    value = YAML::Load(assignment.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    return {path + ": cannot read the value \"" + assignment.substr(eq + 1) + "\": " + e.what()};
  }
  const Field* field = find(path);
  if (field && !field->set_node && (value.IsMap() || value.IsSequence())) {
    return {path + ": expected " + field->expected + ", got " + node_kind(value)};
  }
  return apply_scalar(path, value.IsNull() ? "" : value.Scalar());
}

std::string ConfigSchema::to_yaml_string() const {
  std::ostringstream out;
  std::vector<std::string> open;  // the section path currently written
  for (const auto& f : fields_) {
    const auto parts = split_path(f.path);
    size_t common = 0;
    while (common < open.size() && common + 1 < parts.size() && open[common] == parts[common]) {
      ++common;
    }
    open.resize(common);
    for (size_t i = common; i + 1 < parts.size(); ++i) {
      out << std::string(2 * i, ' ') << parts[i] << ":\n";
      open.push_back(parts[i]);
    }
    const std::string value = f.get();
    out << std::string(2 * (parts.size() - 1), ' ') << parts.back() << ": "
        << (f.quoted ? escape(value) : value) << "\n";
  }
  return out.str();
}

YAML::Node ConfigSchema::to_yaml() const { return YAML::Load(to_yaml_string()); }

std::string ConfigSchema::describe() const {
  std::ostringstream out;
  for (const auto& f : fields_) {
    out << "  " << f.path << " = " << f.get() << "  (" << f.expected << ")";
    if (!f.help.empty()) out << "  " << f.help;
    out << "\n";
  }
  return out.str();
}

}  // namespace comba::train
