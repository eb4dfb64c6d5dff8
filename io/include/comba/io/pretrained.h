// Hugging Face style model folders for Comba, the way fla writes and reads them:
//
//   config.json                      fla's CombaConfig keys (hf_config.h)
//   model.safetensors                all tensors, or, past SaveOptions::max_shard_bytes:
//   model.safetensors.index.json     {"metadata": {"total_size": N}, "weight_map": {name: shard}}
//   model-00001-of-0000K.safetensors ...
//   generation_config.json           bos/eos/pad ids of the config (transformers' generate)
//   tokenizer.model                  optional SentencePiece model (tokenizer.h), with
//   tokenizer_config.json            what transformers.AutoTokenizer needs to open it as a
//   special_tokens_map.json          LlamaTokenizer (hf_tokenizer_files below)
//
// Tensor names are fla's checkpoint names, which are CombaForCausalLM's named_parameters().
// Tied embeddings are written as fla (transformers) writes them: model.embeddings.weight
// only, no lm_head.weight; when reading a tied model a stored lm_head.weight is ignored.
// Also the torch side of safetensors: files <-> name -> tensor maps.
#pragma once
#include <nlohmann/json.hpp>
#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "comba/io/hf_config.h"
#include "comba/io/safetensors.h"
#include "comba/io/tokenizer.h"
#include "comba/nn/causal_lm.h"

namespace comba::io {

inline constexpr const char* kConfigFile = "config.json";
inline constexpr const char* kWeightsFile = "model.safetensors";
inline constexpr const char* kIndexFile = "model.safetensors.index.json";
inline constexpr const char* kTokenizerFile = "tokenizer.model";
inline constexpr const char* kTokenizerConfigFile = "tokenizer_config.json";
inline constexpr const char* kSpecialTokensFile = "special_tokens_map.json";
inline constexpr const char* kGenerationConfigFile = "generation_config.json";

// The special pieces of a SentencePiece model, as transformers names them; "" where the
// model has no such id.
struct SpecialPieces {
  std::string unk, bos, eos, pad;
};
// Read from the model file when SentencePiece is available; otherwise SentencePiece's
// trainer defaults (<unk>, <s>, </s>, no pad), which is what train_sentencepiece writes.
SpecialPieces special_pieces(const std::string& tokenizer_model);

// The bodies of tokenizer_config.json and special_tokens_map.json for a SentencePiece
// tokenizer beside a model of config `model`: tokenizer_class LlamaTokenizer (which
// AutoTokenizer opens from tokenizer.model), no BOS/EOS added by encode (comba-tokenize
// adds BOS only with --bos, and encode() never does), model_max_length from
// max_position_embeddings.
nlohmann::ordered_json hf_tokenizer_config(const SpecialPieces& pieces, const nn::CombaConfig& model);
nlohmann::ordered_json hf_special_tokens_map(const SpecialPieces& pieces);
// generation_config.json: the config's bos/eos/pad ids (null where -1: none).
nlohmann::ordered_json hf_generation_config(const nn::CombaConfig& model);

// safetensors dtype <-> torch dtype (throws FormatError for dtypes torch lacks here).
c10::ScalarType to_scalar_type(Dtype dtype);
Dtype to_safetensors_dtype(c10::ScalarType type);

// An owned CPU tensor holding a copy of the entry's bytes.
torch::Tensor read_tensor(const SafetensorsFile& file, const TensorEntry& entry);
// Every tensor of a file, by name (owned CPU copies).
std::map<std::string, torch::Tensor> load_safetensors(const std::string& path);
// Writes named tensors (any device; made contiguous on the CPU first).
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

struct SaveOptions {
  // Split into shards past this many bytes (transformers' default max_shard_size, 5 GB).
  TORCH_ARG(int64_t, max_shard_bytes) = 5'000'000'000;
  // Cast floating tensors to this dtype on write; nullopt keeps each tensor's dtype.
  TORCH_ARG(std::optional<c10::ScalarType>, dtype) = std::nullopt;
  // A SentencePiece model to copy into the folder as tokenizer.model; empty: none.
  TORCH_ARG(std::string, tokenizer_model);
};

struct LoadOptions {
  // Parameter dtype of the built model; nullopt keeps the dtype stored in the files
  // (transformers' torch_dtype="auto"). Default fp32, as transformers loads.
  TORCH_ARG(std::optional<c10::ScalarType>, dtype) = c10::ScalarType::Float;
  TORCH_ARG(torch::Device, device) = torch::kCPU;
  // Load tokenizer.model when the folder has one and the build has SentencePiece.
  TORCH_ARG(bool, load_tokenizer) = true;
};

// The tensors a folder would hold for this model, in parameter order (fla's names; no
// lm_head.weight when tied). Views of the parameters: no copy.
std::vector<std::pair<std::string, torch::Tensor>> checkpoint_tensors(const nn::CombaForCausalLM& model);

// Writes config.json (the model's config plus `extra` keys), generation_config.json, the
// weights (single file or shards) and optionally tokenizer.model with its
// tokenizer_config.json and special_tokens_map.json into `dir` (created if missing). Weight files
// of an earlier save that the new layout does not use are removed, so that a folder never
// mixes two saves. `attn_extra`: the unknown keys of each attn spec (ModelConfigFile).
void save_pretrained(const nn::CombaForCausalLM& model, const std::string& dir, const SaveOptions& options = {},
                     const nlohmann::ordered_json& extra = nlohmann::ordered_json::object(),
                     const nlohmann::ordered_json& attn_extra = nlohmann::ordered_json::array());

// A folder's config.json (for a trainer's model.init_from: the folder decides the model).
ModelConfigFile read_pretrained_config(const std::string& dir);

// One line per field of role kShape (nn/config.h) on which a folder's config and a model's
// differ once derived sizes are spelled out: "<config.json key> = <folder's> in the folder,
// <model's> in the model". Empty: the folder's weights fit the model.
std::vector<std::string> architecture_differences(const nn::CombaConfig& model, const nn::CombaConfig& folder);

// Copies a folder's weights into an existing model (each parameter keeps its dtype and
// device). Throws FormatError naming the folder and the key or tensor when config.json
// describes another architecture, for a missing tensor, an extra one, a shape mismatch,
// or an unreadable file; the model is untouched on error.
void load_weights(nn::CombaForCausalLM& model, const std::string& dir);

struct Pretrained {
  ModelConfigFile config;
  nn::CombaForCausalLM model{nullptr};   // eval mode
  std::shared_ptr<Tokenizer> tokenizer;  // null: no tokenizer.model, or no SentencePiece
};

// config.json -> model -> weights (+ tokenizer): what generate / evaluate / fine-tune start from.
Pretrained load_pretrained(const std::string& dir, const LoadOptions& options = {});

}  // namespace comba::io
