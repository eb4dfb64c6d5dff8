// A typed registry of config keys ("optimizer.lr" -> a field of an options struct) that
// maps YAML and --set overrides onto plain structs and back. Every failure is collected
// with its key path so that one run of the program reports every mistake at once.
// Torch-free: the schema only knows scalars, bounds and choices.
#pragma once
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace YAML {
class Node;
}

namespace comba::train {

// Numeric bounds with the wording used in error messages ("a positive number").
struct Bounds {
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_inclusive = true;
  bool max_inclusive = true;

  static Bounds any() { return {}; }
  static Bounds positive() { return {0.0, std::numeric_limits<double>::infinity(), false, true}; }
  static Bounds non_negative() { return {0.0, std::numeric_limits<double>::infinity(), true, true}; }
  static Bounds at_least(double v) { return {v, std::numeric_limits<double>::infinity(), true, true}; }
  static Bounds closed(double lo, double hi) { return {lo, hi, true, true}; }
  static Bounds closed_open(double lo, double hi) { return {lo, hi, true, false}; }
  bool contains(double v) const;
  // "a positive number", "an integer >= 1", "a number in [0, 1)", ...
  std::string describe(bool integer) const;
};

class ConfigSchema {
 public:
  void add(const std::string& path, bool* target, const std::string& help);
  void add(const std::string& path, int64_t* target, Bounds bounds, const std::string& help);
  // An integer that may also be null (YAML `null` or `~`), meaning "derive it".
  void add(const std::string& path, std::optional<int64_t>* target, Bounds bounds,
           const std::string& help);
  void add(const std::string& path, double* target, Bounds bounds, const std::string& help);
  // A string; with `choices` only those values are accepted.
  void add(const std::string& path, std::string* target, std::vector<std::string> choices,
           const std::string& help);

  // A structured value (a mapping or a list, e.g. model.attn): `set` reads the YAML node
  // given for `path` and returns one message per problem, each naming its key path;
  // `get` writes the value as one line of YAML flow style. --set cannot give it.
  void add_node(const std::string& path, std::function<std::vector<std::string>(const YAML::Node&)> set,
                std::function<std::string()> get, const std::string& expected, const std::string& help);

  // Applies every scalar of `root` (a mapping); returns one message per problem:
  // unknown keys, wrong types, out-of-range values, keys given twice in one mapping. Valid keys are applied even when
  // others fail, so that later checks see as much of the config as possible.
  std::vector<std::string> apply_yaml(const YAML::Node& root) const;
  // Applies "key.path=value"; the value is read as a YAML scalar.
  std::vector<std::string> apply_override(const std::string& assignment) const;
  // Applies one scalar text to one key (the common core of both paths above).
  std::vector<std::string> apply_scalar(const std::string& path, const std::string& text) const;

  // The current values as a nested mapping in registration order.
  YAML::Node to_yaml() const;
  std::string to_yaml_string() const;
  // "path: help (current value)" for every key, for --help.
  std::string describe() const;

  bool has(const std::string& path) const;
  std::vector<std::string> paths() const;
  // The current value of a key as to_yaml writes it (strings unquoted); throws
  // std::out_of_range for an unknown key.
  std::string value(const std::string& path) const;

 private:
  struct Field {
    std::string path;
    std::string expected;  // wording for errors: "a positive number"
    std::string help;
    bool quoted = false;   // emitted as a quoted string
    // Parses and stores `text`; false when the value is not acceptable.
    std::function<bool(const std::string& text)> set;
    std::function<std::string()> get;
    // Set for add_node fields (which `set` then refuses): reads the whole node.
    std::function<std::vector<std::string>(const YAML::Node&)> set_node = nullptr;
  };
  const Field* find(const std::string& path) const;
  void apply_node(const YAML::Node& node, const std::string& prefix,
                  std::vector<std::string>& errors) const;
  std::string known_keys_under(const std::string& prefix) const;
  std::vector<Field> fields_;
};

// Renders a value for an error message: strings quoted, like the user wrote them.
std::string quote_value(const std::string& text);

}  // namespace comba::train
