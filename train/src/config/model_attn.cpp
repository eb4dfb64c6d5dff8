// model.attn <-> CombaConfig::attn (see model_attn.h). Every problem of every spec is
// reported, each with its key path, like the scalar schema does.
#include "comba/train/config/model_attn.h"

#include "scalar_text.h"

#include <yaml-cpp/yaml.h>

#include <array>
#include <cmath>
#include <map>
#include <optional>
#include <sstream>

namespace comba::train {
namespace {

constexpr std::array<const char*, 6> kKeys = {"layers", "num_heads", "num_kv_heads", "qkv_bias", "window_size",
                                               "rope_theta"};

std::string shown(const YAML::Node& node) {
  if (node.IsMap()) return "a mapping";
  if (node.IsSequence()) return "a list";
  if (node.IsNull()) return "null";
  return "\"" + node.Scalar() + "\"";
}

// Scalars follow the scalar schema's spelling rules (scalar_text.h).
std::optional<int64_t> to_int(const YAML::Node& node) {
  return node.IsScalar() ? parse_int(node.Scalar()) : std::nullopt;
}

std::optional<double> to_double(const YAML::Node& node) {
  return node.IsScalar() ? parse_double(node.Scalar()) : std::nullopt;
}

std::optional<bool> to_bool(const YAML::Node& node) {
  return node.IsScalar() ? parse_bool(node.Scalar()) : std::nullopt;
}

nn::AttentionSpec read_spec(const YAML::Node& node, const std::string& at, std::vector<std::string>& errors) {
  nn::AttentionSpec spec;
  if (!node.IsMap()) {
    errors.push_back(at + ": expected a mapping of layers, num_heads, num_kv_heads, qkv_bias, window_size, "
                          "rope_theta, got " + shown(node));
    return spec;
  }
  std::map<std::string, bool> seen;
  for (const auto& entry : node) {
    const std::string key = entry.first.as<std::string>();
    const std::string path = at + "." + key;
    const YAML::Node& value = entry.second;
    if (!seen.emplace(key, true).second) {
      errors.push_back(path + ": duplicate key; keep one");
      continue;
    }
    const auto positive = [&](const char* what_null) -> std::optional<int64_t> {
      const auto v = to_int(value);
      if (v && *v > 0) return v;
      errors.push_back(path + ": expected a positive integer" + what_null + ", got " + shown(value));
      return std::nullopt;
    };
    if (key == "layers") {
      if (!value.IsSequence()) {
        errors.push_back(path + ": expected a list of layer indices, got " + shown(value));
        continue;
      }
      for (size_t j = 0; j < value.size(); ++j) {
        const auto v = to_int(value[j]);
        if (v) {
          spec.layers.push_back(*v);
        } else {
          errors.push_back(path + "[" + std::to_string(j) + "]: expected an integer, got " + shown(value[j]));
        }
      }
    } else if (key == "num_heads") {
      if (const auto v = positive("")) spec.num_heads = *v;
    } else if (key == "num_kv_heads") {
      if (value.IsNull()) continue;  // fla: null = num_heads
      if (const auto v = positive(" or null (= num_heads)")) spec.num_kv_heads = *v;
    } else if (key == "qkv_bias") {
      const auto v = to_bool(value);
      if (v) {
        spec.qkv_bias = *v;
      } else {
        errors.push_back(path + ": expected true or false, got " + shown(value));
      }
    } else if (key == "window_size") {
      if (value.IsNull()) continue;  // no window
      if (const auto v = positive(" or null (no window)")) spec.window_size = *v;
    } else if (key == "rope_theta") {
      const auto v = to_double(value);
      if (v && *v > 0) {
        spec.rope_theta = *v;
      } else {
        errors.push_back(path + ": expected a positive finite number, got " + shown(value));
      }
    } else {
      std::string known;
      for (const char* k : kKeys) known += std::string(known.empty() ? "" : ", ") + k;
      errors.push_back(path + ": unknown key (known keys in " + at + ": " + known + ")");
    }
  }
  for (const char* key : {"layers", "num_heads"}) {
    if (seen.count(key) == 0) errors.push_back(at + "." + key + ": required, got <missing>");
  }
  return spec;
}

std::string format_number(double v) {
  std::ostringstream out;
  out.precision(17);
  out << v;
  std::string text = out.str();
  if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
  return text;
}

std::string spec_to_yaml(const nn::AttentionSpec& spec) {
  std::string layers;
  for (const int64_t layer : spec.layers) layers += (layers.empty() ? "" : ", ") + std::to_string(layer);
  return "{layers: [" + layers + "], num_heads: " + std::to_string(spec.num_heads) +
         ", num_kv_heads: " + std::to_string(spec.kv_heads()) + ", qkv_bias: " + (spec.qkv_bias ? "true" : "false") +
         ", window_size: " + (spec.window_size > 0 ? std::to_string(spec.window_size) : std::string("null")) +
         ", rope_theta: " + format_number(spec.rope_theta) + "}";
}

}  // namespace

std::vector<std::string> read_attn_yaml(const YAML::Node& node, const std::string& path, nn::CombaConfig& model) {
  std::vector<std::string> errors;
  model.attn.clear();
  model.attn_is_list = node.IsSequence();
  if (node.IsNull()) return errors;
  if (node.IsMap()) {
    model.attn.push_back(read_spec(node, path, errors));
  } else if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i) {
      model.attn.push_back(read_spec(node[i], path + "[" + std::to_string(i) + "]", errors));
    }
  } else {
    errors.push_back(path + ": expected null, a mapping or a list of mappings (hybrid attention layers), got " +
                     shown(node));
  }
  return errors;
}

std::string attn_to_yaml(const nn::CombaConfig& model) {
  if (!model.attn_is_list) return model.attn.empty() ? "null" : spec_to_yaml(model.attn.front());
  std::string out;
  for (const auto& spec : model.attn) out += (out.empty() ? "" : ", ") + spec_to_yaml(spec);
  return "[" + out + "]";
}

}  // namespace comba::train
