// config.json <-> CombaConfig (see hf_config.h). One table of keys drives both directions
// so that a key cannot be read without being written, or the reverse.
#include "comba/io/hf_config.h"

#include "comba/io/safetensors.h"

#include "comba/core/atomic_file.h"

#include <algorithm>
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

// Integer fields where JSON null means "unset" (stored as `unset` here).
Field nullable_int(const char* key, int64_t nn::CombaConfig::*member, int64_t unset) {
  return {key,
          [=](nn::CombaConfig& c, const ordered_json& v, const std::string& where) {
            c.*member = v.is_null() ? unset : as_int(v, where);
          },
          [=](const nn::CombaConfig& c) { return c.*member == unset ? ordered_json(nullptr) : ordered_json(c.*member); }};
}
Field int_field(const char* key, int64_t nn::CombaConfig::*member) {
  return {key, [=](nn::CombaConfig& c, const ordered_json& v, const std::string& where) { c.*member = as_int(v, where); },
          [=](const nn::CombaConfig& c) { return ordered_json(c.*member); }};
}
Field double_field(const char* key, double nn::CombaConfig::*member) {
  return {key,
          [=](nn::CombaConfig& c, const ordered_json& v, const std::string& where) { c.*member = as_double(v, where); },
          [=](const nn::CombaConfig& c) { return ordered_json(c.*member); }};
}
Field bool_field(const char* key, bool nn::CombaConfig::*member) {
  return {key, [=](nn::CombaConfig& c, const ordered_json& v, const std::string& where) { c.*member = as_bool(v, where); },
          [=](const nn::CombaConfig& c) { return ordered_json(c.*member); }};
}

// expand_v is an int in fla's signature but a float in its layer: write an integer when
// it is one, so that Python reads back the same type it wrote.
ordered_json number(double x) {
  if (x == static_cast<double>(static_cast<int64_t>(x))) return ordered_json(static_cast<int64_t>(x));
  return ordered_json(x);
}

const std::vector<Field>& fields() {
  using C = nn::CombaConfig;
  static const std::vector<Field> table = {
      {"attn_mode",
       [](C& c, const ordered_json& v, const std::string& where) {
         if (!v.is_string()) throw FormatError(where + ": expected a string, got " + v.dump());
         c.attn_mode = v.get<std::string>();
       },
       [](const C& c) { return ordered_json(c.attn_mode); }},
      int_field("hidden_size", &C::hidden_size),
      {"expand_v", [](C& c, const ordered_json& v, const std::string& where) { c.expand_v = as_double(v, where); },
       [](const C& c) { return number(c.expand_v); }},
      bool_field("use_gate", &C::use_output_gate),
      bool_field("use_short_conv", &C::use_short_conv),
      bool_field("use_output_correction", &C::use_output_correction),
      bool_field("use_inner_decay", &C::use_inner_decay),
      {"correction_factor",
       [](C& c, const ordered_json& v, const std::string& where) { c.correction_factor = as_double(v, where); },
       [](const C& c) { return number(c.correction_factor); }},
      int_field("conv_size", &C::conv_size),
      bool_field("conv_bias", &C::conv_bias),
      bool_field("allow_neg_eigval", &C::allow_neg_eigval),
      int_field("head_dim", &C::head_dim),
      int_field("num_heads", &C::num_heads),
      nullable_int("num_v_heads", &C::num_v_heads, 0),
      int_field("max_position_embeddings", &C::max_position_embeddings),
      {"hidden_ratio",
       // null: fla's MLP falls back to 4.
       [](C& c, const ordered_json& v, const std::string& where) { c.hidden_ratio = v.is_null() ? 4.0 : as_double(v, where); },
       [](const C& c) { return number(c.hidden_ratio); }},
      nullable_int("intermediate_size", &C::intermediate_size, 0),
      int_field("num_hidden_layers", &C::num_hidden_layers),
      double_field("norm_eps", &C::norm_eps),
      nullable_int("pad_token_id", &C::pad_token_id, -1),
      nullable_int("bos_token_id", &C::bos_token_id, -1),
      nullable_int("eos_token_id", &C::eos_token_id, -1),
      bool_field("tie_word_embeddings", &C::tie_word_embeddings),
      double_field("initializer_range", &C::initializer_range),
      int_field("vocab_size", &C::vocab_size),
  };
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
  std::vector<std::string> consumed = {"model_type", "architectures", "use_output_gate", "torch_dtype", "dtype"};
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
  if (root.contains("attn") && !root.at("attn").is_null()) {
    throw FormatError(fail_prefix(label, "attn") + ": hybrid attention layers are not supported here (expected null, got " +
                      root.at("attn").dump() + ")");
  }
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
    const std::string what = e.what();
    throw FormatError(label + ": " + what.substr(0, what.find('\n')));
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
  if (!torch_dtype.empty()) root["torch_dtype"] = torch_dtype;
  for (const auto& [key, value] : config.extra.items()) {
    if (!root.contains(key)) root[key] = value;
  }
  return root;
}

void write_config(const std::string& path, const ModelConfigFile& config, const std::string& torch_dtype) {
  core::write_file_atomic(path, config_to_json(config, torch_dtype).dump(2) + "\n");
}

}  // namespace comba::io
