// config.json <-> CombaConfig (see hf_config.h). One table of keys, made from CombaConfig's
// field list, drives both directions so that a key cannot be read without being written,
// or the reverse.
#include "comba/io/hf_config.h"

#include "comba/io/safetensors.h"

#include "comba/core/atomic_file.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <vector>

namespace comba::io {
namespace {

using nlohmann::ordered_json;

// Keys fla's config carries that have no field here but are set on write.
constexpr const char* kModelType = "comba";
constexpr const char* kArchitecture = "CombaForCausalLM";

std::string fail_prefix(const std::string& label, const std::string& key) {
  return label + ": key \"" + key + "\"";
}

struct Field {
  const char* key;
  std::function<void(nn::CombaConfig&, const ordered_json&, const std::string&)> read;
  std::function<ordered_json(const nn::CombaConfig&)> write;
};

int64_t as_int(const ordered_json& v, const std::string& where) {
  if (v.is_number_integer()) return v.get<int64_t>();
  // Python writes 2.0 for a float-typed int field; accept integral floats.
  if (v.is_number_float() && v.get<double>() == static_cast<double>(static_cast<int64_t>(v.get<double>()))) {
    return static_cast<int64_t>(v.get<double>());
  }
  throw FormatError(where + ": expected an integer, got " + v.dump());
}

double as_double(const ordered_json& v, const std::string& where) {
  if (v.is_number()) return v.get<double>();
  throw FormatError(where + ": expected a number, got " + v.dump());
}

bool as_bool(const ordered_json& v, const std::string& where) {
  if (v.is_boolean()) return v.get<bool>();
  throw FormatError(where + ": expected true or false, got " + v.dump());
}

// expand_v is an int in fla's signature but a float in its layer: numbers are written as
// integers when they are one, so that Python reads back the type it wrote.
ordered_json number(double x) {
  if (x == static_cast<double>(static_cast<int64_t>(x))) return ordered_json(static_cast<int64_t>(x));
  return ordered_json(x);
}

// One Field per CombaConfig field (nn::for_each_field), by the field's type. JSON null
// reads as the field's hf_null; an integer holding it is written as null.
using C = nn::CombaConfig;
Field make_field(const nn::ConfigField<int64_t>& f) {
  const auto member = f.member;
  const auto null = f.hf_null;
  return {f.hf_key,
          [=](C& c, const ordered_json& v, const std::string& where) {
            c.*member = v.is_null() && null ? *null : as_int(v, where);
          },
          [=](const C& c) { return null && c.*member == *null ? ordered_json(nullptr) : ordered_json(c.*member); }};
}
Field make_field(const nn::ConfigField<double>& f) {
  const auto member = f.member;
  const auto null = f.hf_null;  // hidden_ratio: fla's MLP reads None as 4
  return {f.hf_key,
          [=](C& c, const ordered_json& v, const std::string& where) {
            c.*member = v.is_null() && null ? *null : as_double(v, where);
          },
          [=](const C& c) { return number(c.*member); }};
}
Field make_field(const nn::ConfigField<bool>& f) {
  const auto member = f.member;
  return {f.hf_key, [=](C& c, const ordered_json& v, const std::string& where) { c.*member = as_bool(v, where); },
          [=](const C& c) { return ordered_json(c.*member); }};
}
Field make_field(const nn::ConfigField<std::string>& f) {
  const auto member = f.member;
  return {f.hf_key,
          [=](C& c, const ordered_json& v, const std::string& where) {
            if (!v.is_string()) throw FormatError(where + ": expected a string, got " + v.dump());
            c.*member = v.get<std::string>();
          },
          [=](const C& c) { return ordered_json(c.*member); }};
}

// The keys of one attn spec that AttentionSpec models; any other key is kept.
constexpr std::array<const char*, 6> kAttnKeys = {"layers",      "num_heads",   "num_kv_heads",
                                                  "qkv_bias",    "window_size", "rope_theta"};

// fla requires Python ints (not bools, not floats) for the integer fields of a spec.
int64_t as_strict_int(const ordered_json& v, const std::string& where, const char* what) {
  if (v.is_number_integer()) return v.get<int64_t>();
  throw FormatError(where + ": expected " + what + ", got " + v.dump());
}

nn::AttentionSpec read_attention_spec(const ordered_json& object, const std::string& at, ordered_json& unknown) {
  if (!object.is_object()) throw FormatError(at + ": expected an object, got " + object.dump());
  const auto field = [&](const char* key) { return at + "." + key; };
  for (const char* key : {"layers", "num_heads"}) {
    if (!object.contains(key)) throw FormatError(field(key) + ": required, got <missing>");
  }
  nn::AttentionSpec spec;
  const auto& layers = object.at("layers");
  if (!layers.is_array()) throw FormatError(field("layers") + ": expected a list of layer indices, got " + layers.dump());
  for (size_t j = 0; j < layers.size(); ++j) {
    spec.layers.push_back(as_strict_int(layers[j], field("layers") + "[" + std::to_string(j) + "]", "an integer"));
  }
  const auto positive = [&](const char* key) {
    const int64_t v = as_strict_int(object.at(key), field(key), "a positive integer");
    if (v <= 0) throw FormatError(field(key) + ": expected a positive integer, got " + std::to_string(v));
    return v;
  };
  spec.num_heads = positive("num_heads");
  spec.num_kv_heads = object.contains("num_kv_heads") && !object.at("num_kv_heads").is_null()
                          ? positive("num_kv_heads")
                          : spec.num_heads;
  if (object.contains("qkv_bias")) spec.qkv_bias = as_bool(object.at("qkv_bias"), field("qkv_bias"));
  if (object.contains("window_size") && !object.at("window_size").is_null()) {
    spec.window_size = positive("window_size");
  }
  if (object.contains("rope_theta")) {
    const auto& theta = object.at("rope_theta");
    if (!theta.is_number() || !std::isfinite(theta.get<double>()) || theta.get<double>() <= 0) {
      throw FormatError(field("rope_theta") + ": expected a positive finite number, got " + theta.dump());
    }
    spec.rope_theta = theta.get<double>();
  }
  unknown = ordered_json::object();
  for (const auto& [key, value] : object.items()) {
    if (std::find_if(kAttnKeys.begin(), kAttnKeys.end(), [&](const char* k) { return key == k; }) == kAttnKeys.end()) {
      unknown[key] = value;
    }
  }
  return spec;
}

ordered_json write_attention_spec(const nn::AttentionSpec& spec, const ordered_json& unknown) {
  ordered_json out = ordered_json::object();
  out["layers"] = spec.layers;
  out["num_heads"] = spec.num_heads;
  out["num_kv_heads"] = spec.kv_heads();
  out["qkv_bias"] = spec.qkv_bias;
  out["window_size"] = spec.window_size > 0 ? ordered_json(spec.window_size) : ordered_json(nullptr);
  out["rope_theta"] = spec.rope_theta;  // a float, as fla's default 10000.0
  if (unknown.is_object()) {
    for (const auto& [key, value] : unknown.items()) {
      if (!out.contains(key)) out[key] = value;
    }
  }
  return out;
}

// `attn` into model.attn / attn_is_list and the specs' unknown keys.
void read_attention(const ordered_json& attn, const std::string& label, ModelConfigFile& out) {
  out.model.attn.clear();
  out.attn_extra = ordered_json::array();
  out.model.attn_is_list = attn.is_array();
  if (attn.is_null()) return;
  const std::string key = fail_prefix(label, "attn");
  if (attn.is_object()) {
    ordered_json unknown;
    out.model.attn.push_back(read_attention_spec(attn, key, unknown));
    out.attn_extra.push_back(unknown);
    return;
  }
  if (!attn.is_array()) throw FormatError(key + ": expected null, an object or a list of objects, got " + attn.dump());
  for (size_t i = 0; i < attn.size(); ++i) {
    ordered_json unknown;
    out.model.attn.push_back(read_attention_spec(attn[i], key + "[" + std::to_string(i) + "]", unknown));
    out.attn_extra.push_back(unknown);
  }
}

const std::vector<Field>& fields() {
  static const std::vector<Field> table = [] {
    std::vector<Field> out;
    nn::for_each_field([&](const auto& field) { out.push_back(make_field(field)); });
    return out;
  }();
  return table;
}

}  // namespace

ModelConfigFile config_from_json(const std::string& text, const std::string& label) {
  ordered_json root;
  try {
    root = ordered_json::parse(text);
  } catch (const ordered_json::parse_error& e) {
    throw FormatError(label + ": bad JSON: " + e.what());
  }
  if (!root.is_object()) throw FormatError(label + ": expected a JSON object, got " + root.type_name());

  ModelConfigFile out;
  // Keys consumed here and regenerated on write.
  std::vector<std::string> consumed = {"model_type",  "architectures", "use_output_gate",
                                      "torch_dtype", "dtype",         "attn"};
  if (root.contains("model_type")) {
    const auto& mt = root.at("model_type");
    if (!mt.is_string() || mt.get<std::string>() != kModelType) {
      throw FormatError(fail_prefix(label, "model_type") + ": expected \"comba\", got " + mt.dump() +
                        " (only Comba models load here)");
    }
  }
  for (const Field& f : fields()) {
    consumed.emplace_back(f.key);
    if (root.contains(f.key)) f.read(out.model, root.at(f.key), fail_prefix(label, f.key));
  }
  // fla's modeling code reads `use_output_gate`; its config stores `use_gate`. Either may
  // appear; when both do they must agree.
  if (root.contains("use_output_gate")) {
    const bool gate = as_bool(root.at("use_output_gate"), fail_prefix(label, "use_output_gate"));
    if (root.contains("use_gate") && gate != out.model.use_output_gate) {
      throw FormatError(label + ": keys \"use_gate\" and \"use_output_gate\" disagree");
    }
    out.model.use_output_gate = gate;
  }
  if (root.contains("attn")) read_attention(root.at("attn"), label, out);
  if (root.contains("hidden_act")) {
    const auto& act = root.at("hidden_act");
    if (!act.is_string() || (act.get<std::string>() != "swish" && act.get<std::string>() != "silu")) {
      throw FormatError(fail_prefix(label, "hidden_act") + ": expected \"swish\" (SwiGLU MLP), got " + act.dump());
    }
  }
  for (const auto& [key, value] : root.items()) {
    if (std::find(consumed.begin(), consumed.end(), key) == consumed.end()) out.extra[key] = value;
  }
  try {
    out.model.validate();
  } catch (const std::exception& e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    // validate()'s attn messages name the spec as attn[i].field: spelled as the key here.
    const std::string attn_prefix = "CombaConfig: attn";
    if (what.rfind(attn_prefix, 0) == 0) what = "key \"attn\"" + what.substr(attn_prefix.size());
    throw FormatError(label + ": " + what);
  }
  return out;
}

ModelConfigFile read_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FormatError(path + ": cannot open (a model folder needs config.json)");
  std::ostringstream text;
  text << in.rdbuf();
  return config_from_json(text.str(), path);
}

nlohmann::ordered_json config_to_json(const ModelConfigFile& config, const std::string& torch_dtype) {
  ordered_json root = ordered_json::object();
  root["model_type"] = kModelType;
  root["architectures"] = ordered_json::array({kArchitecture});
  for (const Field& f : fields()) root[f.key] = f.write(config.model);
  root["use_output_gate"] = config.model.use_output_gate;
  root["attn"] = attn_to_json(config.model, config.attn_extra);
  if (!torch_dtype.empty()) root["torch_dtype"] = torch_dtype;
  for (const auto& [key, value] : config.extra.items()) {
    if (!root.contains(key)) root[key] = value;
  }
  return root;
}

nlohmann::ordered_json attn_to_json(const nn::CombaConfig& model, const nlohmann::ordered_json& attn_extra) {
  const auto unknown = [&](size_t i) {
    return attn_extra.is_array() && i < attn_extra.size() ? attn_extra[i] : ordered_json::object();
  };
  if (!model.attn_is_list) {
    return model.attn.empty() ? ordered_json(nullptr) : write_attention_spec(model.attn.front(), unknown(0));
  }
  ordered_json list = ordered_json::array();
  for (size_t i = 0; i < model.attn.size(); ++i) list.push_back(write_attention_spec(model.attn[i], unknown(i)));
  return list;
}

void write_config(const std::string& path, const ModelConfigFile& config, const std::string& torch_dtype) {
  core::write_file_atomic(path, config_to_json(config, torch_dtype).dump(2) + "\n");
}

}  // namespace comba::io
