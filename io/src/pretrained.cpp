// Model folders and the torch side of safetensors (see pretrained.h).
#include "comba/io/pretrained.h"

#include "comba/core/atomic_file.h"
#include "comba/core/file_util.h"
#include "comba/nn/model_size.h"

#include <c10/util/Exception.h>
#include <torch/nn/module.h>
#include <torch/utils.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

namespace comba::io {
using nlohmann::ordered_json;

namespace {

std::string shape_str(at::IntArrayRef shape) {
  std::ostringstream out;
  out << shape;
  return out.str();
}

// "a, b, c (and N more)": error messages list names without flooding the terminal.
std::string name_list(const std::vector<std::string>& names) {
  constexpr size_t kShown = 8;
  std::string s;
  for (size_t i = 0; i < names.size() && i < kShown; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > kShown) s += " (and " + std::to_string(names.size() - kShown) + " more)";
  return s;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FormatError(path + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string dtype_label(c10::ScalarType t) {
  switch (t) {
    case c10::ScalarType::Float: return "float32";
    case c10::ScalarType::BFloat16: return "bfloat16";
    case c10::ScalarType::Half: return "float16";
    case c10::ScalarType::Double: return "float64";
    default: return "";
  }
}

// The files of a folder, opened: which file holds which tensor.
struct FolderWeights {
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  std::map<std::string, std::pair<const SafetensorsFile*, const TensorEntry*>> tensors;
};

FolderWeights open_weights(const std::string& dir) {
  FolderWeights out;
  const std::string single = core::join_path(dir, kWeightsFile);
  const std::string index = core::join_path(dir, kIndexFile);
  if (core::path_exists(single)) {
    // transformers prefers the single file too when both exist.
    out.files.push_back(std::make_unique<SafetensorsFile>(single));
    for (const auto& e : out.files.back()->tensors()) out.tensors[e.name] = {out.files.back().get(), &e};
    return out;
  }
  if (!core::path_exists(index)) {
    throw FormatError(dir + ": no model weights: expected " + kWeightsFile + " or " + kIndexFile);
  }
  ordered_json root;
  try {
    root = ordered_json::parse(read_text(index));
  } catch (const ordered_json::parse_error& e) {
    throw FormatError(index + ": bad JSON: " + e.what());
  }
  if (!root.is_object() || !root.contains("weight_map") || !root.at("weight_map").is_object()) {
    throw FormatError(index + ": expected an object with a \"weight_map\" object");
  }
  std::map<std::string, const SafetensorsFile*> by_shard;
  for (const auto& [name, shard] : root.at("weight_map").items()) {
    if (!shard.is_string()) {
      throw FormatError(index + ": weight_map[\"" + name + "\"] expected a file name, got " + shard.dump());
    }
    const std::string shard_name = shard.get<std::string>();
    // Shards live beside the index: a path elsewhere is a malformed (or hostile) index.
    if (shard_name.empty() || shard_name.find('/') != std::string::npos || shard_name == "..") {
      throw FormatError(index + ": weight_map[\"" + name + "\"] expected a file name in the folder, got \"" +
                        shard_name + "\"");
    }
    auto it = by_shard.find(shard_name);
    if (it == by_shard.end()) {
      const std::string shard_path = core::join_path(dir, shard_name);
      if (!core::path_exists(shard_path)) {
        throw FormatError(index + ": shard " + shard_name + " (holding \"" + name + "\") is missing");
      }
      out.files.push_back(std::make_unique<SafetensorsFile>(shard_path));
      it = by_shard.emplace(shard_name, out.files.back().get()).first;
    }
    const TensorEntry* entry = it->second->find(name);
    if (entry == nullptr) {
      throw FormatError(index + ": weight_map puts \"" + name + "\" in " + shard_name + ", which has no such tensor");
    }
    out.tensors[name] = {it->second, entry};
  }
  // Tensors in a shard that the index does not list are extra tensors too.
  for (const auto& file : out.files) {
    for (const auto& e : file->tensors()) {
      if (out.tensors.find(e.name) == out.tensors.end()) {
        throw FormatError(file->path() + ": tensor \"" + e.name + "\" is not listed in " + kIndexFile);
      }
    }
  }
  return out;
}

// Copies bytes into `dst` (any dtype/device): through an aligned view where possible.
void copy_into(torch::Tensor& dst, const SafetensorsFile& file, const TensorEntry& entry) {
  const c10::ScalarType type = to_scalar_type(entry.dtype);
  const uint8_t* bytes = file.bytes(entry);
  torch::Tensor src;
  if (reinterpret_cast<uintptr_t>(bytes) % dtype_size(entry.dtype) == 0) {
    src = torch::from_blob(const_cast<uint8_t*>(bytes), entry.shape, torch::TensorOptions().dtype(type));
  } else {
    src = read_tensor(file, entry);
  }
  dst.copy_(src);
}

// `c` with its derived sizes spelled out, so that two configs describing the same tensors
// compare equal: num_v_heads 0 = num_heads, intermediate_size 0 = the one hidden_ratio
// gives, conv_* ignored where either side has no short convolution.
nn::CombaConfig resolved(const nn::CombaConfig& c, bool both_conv) {
  nn::CombaConfig r = c;
  r.num_v_heads = c.value_heads();
  r.intermediate_size = c.mlp_intermediate_size();
  r.hidden_ratio = 0.0;  // folded into intermediate_size
  if (!both_conv) {
    r.conv_size = 0;
    r.conv_bias = false;
  }
  return r;
}

}  // namespace

std::vector<std::string> architecture_differences(const nn::CombaConfig& model, const nn::CombaConfig& folder) {
  const bool both_conv = model.use_short_conv && folder.use_short_conv;
  const nn::CombaConfig a = resolved(model, both_conv);
  const nn::CombaConfig b = resolved(folder, both_conv);
  std::vector<std::string> differ;
  nn::for_each_field([&](const auto& field) {
    if (field.role != nn::FieldRole::kShape || a.*field.member == b.*field.member) return;
    std::ostringstream line;
    line << std::boolalpha << field.hf_key << " = " << b.*field.member << " in the folder, " << a.*field.member
         << " in the model";
    differ.push_back(line.str());
  });
  // Hybrids: which layers are attention layers and their tensors' shapes (window_size and
  // rope_theta change the function, not the tensors, as kFunction fields do).
  const auto layer_kind = [](const nn::CombaConfig& c, int64_t layer) -> std::string {
    const nn::AttentionSpec* spec = c.attention_for_layer(layer);
    if (!spec) return "a Comba layer";
    std::ostringstream text;
    text << std::boolalpha << "attention (num_heads " << spec->num_heads << ", num_kv_heads " << spec->kv_heads()
         << ", qkv_bias " << spec->qkv_bias << ")";
    return text.str();
  };
  const int64_t layers = std::min(a.num_hidden_layers, b.num_hidden_layers);
  for (int64_t i = 0; i < layers; ++i) {
    const std::string in_model = layer_kind(a, i), in_folder = layer_kind(b, i);
    if (in_model != in_folder) {
      differ.push_back("attn: layer " + std::to_string(i) + " is " + in_folder + " in the folder, " + in_model +
                       " in the model");
    }
  }
  return differ;
}

namespace {

// The folder's config.json must describe the same architecture (the fields of role
// kShape) as the model the weights go into: a mismatch is reported by key, before tensor
// names and shapes would report it less directly.
void check_same_architecture(const nn::CombaConfig& model, const nn::CombaConfig& folder, const std::string& path) {
  const auto differ = architecture_differences(model, folder);
  if (!differ.empty()) {
    std::string text = path + ": describes another architecture than the model's:";
    for (const auto& d : differ) text += "\n  " + d;
    throw FormatError(text);
  }
}

}  // namespace

c10::ScalarType to_scalar_type(Dtype dtype) {
  switch (dtype) {
    case Dtype::BOOL: return c10::ScalarType::Bool;
    case Dtype::U8: return c10::ScalarType::Byte;
    case Dtype::I8: return c10::ScalarType::Char;
    case Dtype::I16: return c10::ScalarType::Short;
    case Dtype::U16: return c10::ScalarType::UInt16;
    case Dtype::F16: return c10::ScalarType::Half;
    case Dtype::BF16: return c10::ScalarType::BFloat16;
    case Dtype::I32: return c10::ScalarType::Int;
    case Dtype::U32: return c10::ScalarType::UInt32;
    case Dtype::F32: return c10::ScalarType::Float;
    case Dtype::F64: return c10::ScalarType::Double;
    case Dtype::I64: return c10::ScalarType::Long;
    case Dtype::U64: return c10::ScalarType::UInt64;
    case Dtype::F8_E5M2: return c10::ScalarType::Float8_e5m2;
    case Dtype::F8_E4M3: return c10::ScalarType::Float8_e4m3fn;
  }
  throw FormatError(std::string("no torch dtype for safetensors dtype ") + dtype_name(dtype));
}

Dtype to_safetensors_dtype(c10::ScalarType type) {
  for (const Dtype d : {Dtype::BOOL, Dtype::U8, Dtype::I8, Dtype::I16, Dtype::U16, Dtype::F16, Dtype::BF16, Dtype::I32,
                        Dtype::U32, Dtype::F32, Dtype::F64, Dtype::I64, Dtype::U64, Dtype::F8_E5M2, Dtype::F8_E4M3}) {
    if (to_scalar_type(d) == type) return d;
  }
  throw std::invalid_argument(std::string("safetensors has no dtype for torch ") + c10::toString(type));
}

torch::Tensor read_tensor(const SafetensorsFile& file, const TensorEntry& entry) {
  auto out = torch::empty(entry.shape, torch::TensorOptions().dtype(to_scalar_type(entry.dtype)));
  if (entry.nbytes() > 0) std::memcpy(out.data_ptr(), file.bytes(entry), entry.nbytes());
  return out;
}

std::map<std::string, torch::Tensor> load_safetensors(const std::string& path) {
  const SafetensorsFile file(path);
  std::map<std::string, torch::Tensor> out;
  for (const auto& e : file.tensors()) out[e.name] = read_tensor(file, e);
  return out;
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<torch::Tensor> keep;  // owns the contiguous CPU copies while writing
  std::vector<TensorBytes> views;
  keep.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    TORCH_CHECK(t.defined(), "save_safetensors(", path, "): tensor \"", name, "\" is undefined");
    keep.push_back(t.detach().to(torch::kCPU).contiguous());
    const auto& c = keep.back();
    views.push_back({name, to_safetensors_dtype(c.scalar_type()), c.sizes().vec(), c.data_ptr()});
  }
  write_safetensors(path, std::move(views), metadata);
}

std::vector<std::pair<std::string, torch::Tensor>> checkpoint_tensors(const nn::CombaForCausalLM& model) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : model->named_parameters(/*recurse=*/true)) out.emplace_back(item.key(), item.value());
  for (const auto& item : model->named_buffers(/*recurse=*/true)) out.emplace_back(item.key(), item.value());
  return out;
}

void save_pretrained(const nn::CombaForCausalLM& model, const std::string& dir, const SaveOptions& options,
                     const ordered_json& extra, const ordered_json& attn_extra) {
  TORCH_CHECK(options.max_shard_bytes() > 0, "save_pretrained(", dir, "): max_shard_bytes expected > 0, got ",
              options.max_shard_bytes());
  core::make_directories(dir);
  const torch::NoGradGuard no_grad;
  auto tensors = checkpoint_tensors(model);
  c10::ScalarType stored = c10::ScalarType::Float;
  for (auto& [name, t] : tensors) {
    if (options.dtype() && t.is_floating_point()) t = t.to(*options.dtype());
    stored = t.scalar_type();
  }
  // Greedy shards in parameter order, as transformers splits them.
  std::vector<std::vector<std::pair<std::string, torch::Tensor>>> shards(1);
  int64_t shard_bytes = 0;
  int64_t total_bytes = 0;
  for (auto& item : tensors) {
    const int64_t nbytes = item.second.numel() * static_cast<int64_t>(item.second.element_size());
    if (!shards.back().empty() && shard_bytes + nbytes > options.max_shard_bytes()) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(item);
    shard_bytes += nbytes;
    total_bytes += nbytes;
  }

  // Remove weight files of an earlier save so that the folder holds exactly one layout.
  for (const auto& name : core::list_directory(dir)) {
    const bool shard = name.rfind("model-", 0) == 0 && name.size() > 12 &&
                       name.compare(name.size() - 12, 12, ".safetensors") == 0;
    if (shard || name == kWeightsFile || name == kIndexFile) core::remove_file(core::join_path(dir, name));
  }
  if (shards.size() == 1) {
    save_safetensors(core::join_path(dir, kWeightsFile), shards.front());
  } else {
    ordered_json weight_map = ordered_json::object();
    const size_t n = shards.size();
    for (size_t i = 0; i < n; ++i) {
      char name[64];
      std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, n);
      save_safetensors(core::join_path(dir, name), shards[i]);
      for (const auto& item : shards[i]) weight_map[item.first] = name;
    }
    ordered_json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
    core::write_file_atomic(core::join_path(dir, kIndexFile), index.dump(2) + "\n");
  }

  ModelConfigFile config;
  config.model = model->config();
  config.extra = extra.is_object() ? extra : ordered_json::object();
  config.attn_extra = attn_extra.is_array() ? attn_extra : ordered_json::array();
  write_config(core::join_path(dir, kConfigFile), config, dtype_label(stored));
  core::write_file_atomic(core::join_path(dir, kGenerationConfigFile),
                          hf_generation_config(config.model).dump(2) + "\n");
  if (!options.tokenizer_model().empty()) {
    // Pieces first: a model that does not load fails before anything is copied.
    const SpecialPieces pieces = special_pieces(options.tokenizer_model());
    core::copy_file(options.tokenizer_model(), core::join_path(dir, kTokenizerFile));
    core::write_file_atomic(core::join_path(dir, kTokenizerConfigFile),
                            hf_tokenizer_config(pieces, config.model).dump(2) + "\n");
    core::write_file_atomic(core::join_path(dir, kSpecialTokensFile), hf_special_tokens_map(pieces).dump(2) + "\n");
  }
}

SpecialPieces special_pieces(const std::string& tokenizer_model) {
  if (!Tokenizer::available()) return {"<unk>", "<s>", "</s>", ""};
  const Tokenizer tok(tokenizer_model);
  const auto piece = [&](int id) { return id >= 0 ? tok.id_to_piece(id) : std::string(); };
  return {piece(tok.unk_id()), piece(tok.bos_id()), piece(tok.eos_id()), piece(tok.pad_id())};
}

namespace {

ordered_json piece_or_null(const std::string& piece) { return piece.empty() ? ordered_json(nullptr) : ordered_json(piece); }

ordered_json id_or_null(int64_t id) { return id >= 0 ? ordered_json(id) : ordered_json(nullptr); }

}  // namespace

ordered_json hf_tokenizer_config(const SpecialPieces& pieces, const nn::CombaConfig& model) {
  return {{"tokenizer_class", "LlamaTokenizer"},
          // comba-tokenize and Tokenizer::encode add neither; the ids must match ours.
          {"add_bos_token", false},
          {"add_eos_token", false},
          {"bos_token", piece_or_null(pieces.bos)},
          {"eos_token", piece_or_null(pieces.eos)},
          {"unk_token", piece_or_null(pieces.unk)},
          {"pad_token", piece_or_null(pieces.pad)},
          {"model_max_length", model.max_position_embeddings},
          // SentencePiece's own encoding of plain text (no prefix-space rewriting).
          {"legacy", true},
          {"clean_up_tokenization_spaces", false},
          {"sp_model_kwargs", ordered_json::object()}};
}

ordered_json hf_special_tokens_map(const SpecialPieces& pieces) {
  ordered_json out = ordered_json::object();
  if (!pieces.bos.empty()) out["bos_token"] = pieces.bos;
  if (!pieces.eos.empty()) out["eos_token"] = pieces.eos;
  if (!pieces.unk.empty()) out["unk_token"] = pieces.unk;
  if (!pieces.pad.empty()) out["pad_token"] = pieces.pad;
  return out;
}

ordered_json hf_generation_config(const nn::CombaConfig& model) {
  return {{"_from_model_config", true},
          {"bos_token_id", id_or_null(model.bos_token_id)},
          {"eos_token_id", id_or_null(model.eos_token_id)},
          {"pad_token_id", id_or_null(model.pad_token_id)}};
}

ModelConfigFile read_pretrained_config(const std::string& dir) {
  if (!core::is_directory(dir)) throw FormatError(dir + ": not a directory (expected a model folder with config.json)");
  return read_config(core::join_path(dir, kConfigFile));
}

void load_weights(nn::CombaForCausalLM& model, const std::string& dir) {
  const std::string config_path = core::join_path(dir, kConfigFile);
  if (core::path_exists(config_path)) check_same_architecture(model->config(), read_config(config_path).model, config_path);
  const FolderWeights weights = open_weights(dir);
  const bool tied = model->config().tie_word_embeddings;
  auto params = checkpoint_tensors(model);

  std::vector<std::string> missing;
  std::vector<std::string> mismatched;
  std::set<std::string> wanted;
  for (const auto& [name, param] : params) {
    wanted.insert(name);
    const auto it = weights.tensors.find(name);
    if (it == weights.tensors.end()) {
      missing.push_back(name);
      continue;
    }
    const TensorEntry& e = *it->second.second;
    if (c10::IntArrayRef(e.shape) != param.sizes()) {
      mismatched.push_back(name + " (file " + shape_str(e.shape) + " in " + it->second.first->path() +
                           ", model expects " + shape_str(param.sizes()) + ")");
    } else if (!at::isFloatingType(to_scalar_type(e.dtype)) && param.is_floating_point()) {
      mismatched.push_back(name + " (file dtype " + dtype_name(e.dtype) + ", expected a floating dtype)");
    }
  }
  std::vector<std::string> extra;
  for (const auto& [name, where] : weights.tensors) {
    // fla's state_dict lists lm_head.weight for a tied model too; the copy adds nothing.
    if (tied && name == "lm_head.weight") continue;
    if (wanted.count(name) == 0) extra.push_back(name);
  }
  const std::string cfg = " for the config (" + std::to_string(model->config().num_hidden_layers) + " layers, tie_word_embeddings=" +
                          (tied ? "true" : "false") + ")";
  if (!missing.empty()) {
    throw FormatError(dir + ": " + std::to_string(missing.size()) + " tensor(s) missing" + cfg + ": " + name_list(missing));
  }
  if (!extra.empty()) {
    throw FormatError(dir + ": " + std::to_string(extra.size()) + " unexpected tensor(s)" + cfg + ": " + name_list(extra));
  }
  if (!mismatched.empty()) {
    throw FormatError(dir + ": tensor shape or dtype mismatch: " + name_list(mismatched));
  }
  const torch::NoGradGuard no_grad;
  for (auto& [name, param] : params) {
    const auto& [file, entry] = weights.tensors.at(name);
    copy_into(param, *file, *entry);
  }
}

Pretrained load_pretrained(const std::string& dir, const LoadOptions& options) {
  Pretrained out;
  out.config = read_pretrained_config(dir);
  out.model = nn::CombaForCausalLM(out.config.model);
  std::optional<c10::ScalarType> dtype = options.dtype();
  if (!dtype) {
    // The first floating tensor of the files decides, as torch_dtype="auto" does.
    const FolderWeights weights = open_weights(dir);
    for (const auto& [name, where] : weights.tensors) {
      const c10::ScalarType t = to_scalar_type(where.second->dtype);
      if (at::isFloatingType(t)) {
        dtype = t;
        break;
      }
    }
  }
  // The CPU copy was checked when the model was built; another device is checked here.
  if (!options.device().is_cpu()) {
    nn::check_parameters_fit(out.config.model, dtype.value_or(c10::ScalarType::Float), options.device());
  }
  out.model->to(options.device(), dtype.value_or(c10::ScalarType::Float));
  load_weights(out.model, dir);
  out.model->eval();
  const std::string tokenizer = core::join_path(dir, kTokenizerFile);
  if (options.load_tokenizer() && Tokenizer::available() && core::path_exists(tokenizer)) {
    out.tokenizer = std::make_shared<Tokenizer>(tokenizer);
  }
  return out;
}

}  // namespace comba::io
