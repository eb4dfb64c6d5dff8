// config.json of a Hugging Face style model folder, in fla's CombaConfig spelling.
//
// Reading maps every key that CombaConfig knows onto it (missing keys keep fla's defaults,
// JSON null means "unset" as in fla: num_v_heads, intermediate_size, pad_token_id) and
// keeps every other key, untouched, in `extra`, so that writing the config back loses
// nothing that Python tools put there (transformers_version, fuse_* flags, ...).
#pragma once
#include <nlohmann/json.hpp>

#include <string>

#include "comba/nn/config.h"

namespace comba::io {

struct ModelConfigFile {
  nn::CombaConfig model;
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();  // keys CombaConfig does not model
  // fla's `attn` keeps unknown keys inside each spec: attn_extra[i] holds those of
  // model.attn[i] (an object; missing entries mean none), written back into that spec.
  nlohmann::ordered_json attn_extra = nlohmann::ordered_json::array();
};

// From JSON text; `label` (a path) starts every message. Throws FormatError (safetensors.h)
// for bad JSON, a key of the wrong type, a model_type other than "comba", or features this
// implementation does not have (hidden_act other than swish).
//
// `attn` (hybrid models) is null, one object or a list of objects, read with fla's
// defaults (num_kv_heads null or missing = num_heads, qkv_bias false, window_size null =
// none, rope_theta 10000); errors name the key as `key "attn"[i].field` (list) or
// `key "attn".field` (one object).
ModelConfigFile config_from_json(const std::string& text, const std::string& label = "config.json");
ModelConfigFile read_config(const std::string& path);

// The JSON object: model_type, architectures, every CombaConfig key (fla's names; the
// output gate is written both as fla's config key `use_gate` and as `use_output_gate`, the
// attribute fla's modeling code reads), `attn` in the form it was read (null, an object or
// a list; num_kv_heads resolved to an integer and window_size 0 as null, as fla's parsed
// config holds them; each spec's unknown keys after its own), then `extra`. `torch_dtype`
// is set when non-empty.
nlohmann::ordered_json config_to_json(const ModelConfigFile& config, const std::string& torch_dtype = "");
// The `attn` value alone (null, one object or a list), as config_to_json writes it;
// `attn_extra` as in ModelConfigFile.
nlohmann::ordered_json attn_to_json(const nn::CombaConfig& model,
                                    const nlohmann::ordered_json& attn_extra = nlohmann::ordered_json::array());
void write_config(const std::string& path, const ModelConfigFile& config, const std::string& torch_dtype = "");

}  // namespace comba::io
