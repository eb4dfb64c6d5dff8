// YAML <-> TrainConfig: the single place where key paths meet struct fields.
#include "comba/train/config/config.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <limits>
#include <sstream>

#include "comba/core/file_util.h"
#include "comba/train/config/model_attn.h"

namespace comba::train {

TrainConfig::TrainConfig() {
  // The built-in task's model: small enough to learn recall in minutes on two CPU cores.
  model.vocab_size = 128;
  model.hidden_size = 64;
  model.num_hidden_layers = 2;
  model.num_heads = 2;
  model.head_dim = 32;
  model.expand_v = 1.0;
  model.tie_word_embeddings = true;
  model.max_position_embeddings = 32;
  batch.micro_batch_size = 32;
  batch.seq_len = 32;
  train.max_steps = 300;
  eval.interval = 50;
  checkpoint.interval = 100;
  checkpoint.keep_last = 2;
  optimizer.lr = 3e-3;
  optimizer.weight_decay = 0.01;
  schedule.warmup_steps = 50;
}

std::string TrainConfig::checkpoint_dir() const {
  return checkpoint.dir.empty() ? logging.run_dir + "/checkpoints" : checkpoint.dir;
}

namespace {

std::string join_lines(const std::vector<std::string>& problems) {
  std::string text = "invalid config (" + std::to_string(problems.size()) + " problem" +
                     (problems.size() == 1 ? "" : "s") + "):";
  for (const auto& p : problems) text += "\n  " + p;
  return text;
}

Bounds to_bounds(const nn::FieldRange& range) {
  return {range.min, std::numeric_limits<double>::infinity(), range.min_inclusive, true};
}

// model.<name> bound to one CombaConfig field, with the field's range and help.
void add_model_field(ConfigSchema& s, const nn::ConfigField<bool>& f, nn::CombaConfig& m) {
  s.add(std::string("model.") + f.name, &(m.*f.member), f.help);
}
void add_model_field(ConfigSchema& s, const nn::ConfigField<std::string>& f, nn::CombaConfig& m) {
  s.add(std::string("model.") + f.name, &(m.*f.member), f.range.choices, f.help);
}
template <class T>
void add_model_field(ConfigSchema& s, const nn::ConfigField<T>& f, nn::CombaConfig& m) {
  s.add(std::string("model.") + f.name, &(m.*f.member), to_bounds(f.range), f.help);
}

}  // namespace

ConfigError::ConfigError(std::vector<std::string> problems)
    : std::runtime_error(join_lines(problems)), problems_(std::move(problems)) {}

ConfigSchema make_schema(TrainConfig& c) {
  ConfigSchema s;
  const auto any = Bounds::any();
  const auto pos = Bounds::positive();
  const auto nonneg = Bounds::non_negative();
  const auto one_up = Bounds::at_least(1);

  s.add("seed", &c.seed, nonneg, "seeds model init and data sampling");
  s.add("device", &c.device, {}, "auto | cpu | cuda | cuda:N");
  s.add("precision", &c.precision, {"fp32", "bf16", "fp64"},
        "bf16: bf16 parameters and compute, fp32 master weights, gradients and optimizer state");

  auto& m = c.model;  // model.*: CombaConfig's field list, after init_from
  s.add("model.init_from", &c.model_init_from, {},
        "model folder (config.json + safetensors); its config replaces model.*");
  nn::for_each_field([&](const auto& field) { add_model_field(s, field, m); });
  s.add_node(
      "model.attn", [&m](const YAML::Node& node) { return read_attn_yaml(node, "model.attn", m); },
      [&m] { return attn_to_yaml(m); }, "null, a mapping or a list of mappings",
      "hybrid: softmax attention in layers of {layers, num_heads, num_kv_heads, qkv_bias, window_size, rope_theta}");

  auto& d = c.data;
  s.add("data.kind", &d.kind, {"recall", "shards", "bytes", "random"}, "");
  s.add("data.recall.num_pairs", &d.recall.num_pairs, one_up, "");
  s.add("data.recall.num_queries", &d.recall.num_queries, one_up, "");
  s.add("data.recall.key_vocab", &d.recall.key_vocab, one_up, "");
  s.add("data.recall.value_vocab", &d.recall.value_vocab, one_up, "");
  s.add("data.train_files", &d.train_files, {}, "shards: glob of training .bin files");
  s.add("data.val_files", &d.val_files, {}, "shards: glob of validation .bin files");
  s.add("data.format", &d.format, {"llm.c", "raw_uint16"},
        "shards: llm.c (256-int32 header) or raw_uint16 (header-less uint16, nanoGPT's train.bin)");
  s.add("data.pack_documents", &d.pack_documents, "shards, random: pack EOS-separated documents");
  s.add("data.random_doc_len", &d.random_doc_len, nonneg, "random: an EOS every N tokens (0: none)");
  s.add("data.eos_id", &d.eos_id, nonneg, "shards: document separator; null: model.eos_token_id");
  s.add("data.text_files", &d.text_files, {}, "bytes: glob of text files");
  s.add("data.val_fraction", &d.val_fraction, Bounds::closed_open(0, 1), "bytes: held-out tail");
  s.add("data.prefetch", &d.prefetch, one_up, "micro-batches built ahead");

  s.add("batch.micro_batch_size", &c.batch.micro_batch_size, one_up, "");
  s.add("batch.seq_len", &c.batch.seq_len, Bounds::at_least(2), "");
  s.add("batch.grad_accum_steps", &c.batch.grad_accum_steps, one_up, "");

  auto& o = c.optimizer;
  s.add("optimizer.lr", &o.lr, pos, "peak learning rate");
  s.add("optimizer.weight_decay", &o.weight_decay, nonneg, "");
  s.add("optimizer.beta1", &o.beta1, Bounds::closed_open(0, 1), "");
  s.add("optimizer.beta2", &o.beta2, Bounds::closed_open(0, 1), "");
  s.add("optimizer.eps", &o.eps, pos, "");
  s.add("optimizer.decay_embeddings", &o.decay_embeddings, "");

  s.add("schedule.kind", &c.schedule.kind, {"cosine", "linear", "wsd", "constant"}, "");
  s.add("schedule.warmup_steps", &c.schedule.warmup_steps, nonneg, "");
  s.add("schedule.min_lr_ratio", &c.schedule.min_lr_ratio, Bounds::closed(0, 1), "");
  s.add("schedule.decay_fraction", &c.schedule.decay_fraction, Bounds::closed(0, 1), "wsd");

  s.add("train.max_steps", &c.train.max_steps, one_up, "");
  s.add("train.grad_clip", &c.train.grad_clip, nonneg, "0: off");
  s.add("train.stop_at_step", &c.train.stop_at_step, nonneg, "0: never");
  s.add("train.benchmark", &c.train.benchmark, "");
  s.add("train.benchmark_warmup", &c.train.benchmark_warmup, nonneg, "");
  s.add("train.threads", &c.train.threads, nonneg, "0: LibTorch default");
  s.add("train.recompute", &c.train.recompute, {"none", "chunk_states", "chunk_workspace", "mixer", "block"},
        "run again in backward instead of keeping activations: chunk_states (the operator's "
        "workspace but its per-chunk states), chunk_workspace (the operator's), mixer (the attn "
        "branch) or block");
  s.add("train.split_length", &c.train.split_length, nonneg,
        "0: the operator's choice; a multiple of 64: sequences longer than it run as segments side by side");

  s.add("eval.interval", &c.eval.interval, nonneg, "0: only at the end");
  s.add("eval.batches", &c.eval.batches, nonneg, "");
  s.add("eval.full_pass", &c.eval.full_pass,
        "true: the whole validation set once (loss, perplexity, bits per byte) instead of eval.batches");

  s.add("checkpoint.interval", &c.checkpoint.interval, nonneg, "0: end and stop only");
  s.add("checkpoint.keep_last", &c.checkpoint.keep_last, one_up, "");
  s.add("checkpoint.dir", &c.checkpoint.dir, {}, "empty: <logging.run_dir>/checkpoints");
  s.add("checkpoint.auto_resume", &c.checkpoint.auto_resume, "");
  s.add("checkpoint.export_dir", &c.checkpoint.export_dir, {},
        "non-empty: export a model folder (config.json + model.safetensors) at the end");

  s.add("distributed.timeout_s", &c.distributed.timeout_s, pos,
        "longest wait for another rank before the run stops with an error");
  s.add("distributed.bucket_mb", &c.distributed.bucket_mb, pos,
        "gradient all-reduce bucket size (MiB), launched during backward");

  s.add("logging.run_dir", &c.logging.run_dir, {}, "");
  s.add("logging.interval", &c.logging.interval, one_up, "");
  s.add("logging.progress_bar", &c.logging.progress_bar, "");
  s.add("logging.level", &c.logging.level, {"debug", "info", "warn", "error"}, "");
  return s;
}

std::vector<std::string> check_config(const TrainConfig& c) {
  std::vector<std::string> problems;
  const auto add = [&](const std::string& p) { problems.push_back(p); };
  try {
    c.model.validate();
  } catch (const std::exception& e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    // validate()'s attn messages name the spec as attn[i].field: the key path here.
    const std::string attn_prefix = "CombaConfig: attn";
    if (what.rfind(attn_prefix, 0) == 0) {
      add("model.attn" + what.substr(attn_prefix.size()));
    } else {
      add("model: " + what);
    }
  }
  // Absurd batch sizes: a step's tokens must be countable (int64), before any allocation.
  const auto& b = c.batch;
  int64_t micro_tokens = 0, step_tokens = 0;
  if (__builtin_mul_overflow(b.micro_batch_size, b.seq_len, &micro_tokens) ||
      __builtin_mul_overflow(micro_tokens, b.grad_accum_steps, &step_tokens)) {
    add("batch: micro_batch_size x seq_len x grad_accum_steps = " + std::to_string(b.micro_batch_size) + " x " +
        std::to_string(b.seq_len) + " x " + std::to_string(b.grad_accum_steps) + " overflows int64");
  }
  if (c.train.split_length % 64 != 0) {
    add("train.split_length: expected 0 or a multiple of 64 (the chunk length), got " +
        std::to_string(c.train.split_length));
  }
  const auto& d = c.data;
  if (d.kind == "recall") {
    const int64_t need = 2 * (d.recall.num_pairs + d.recall.num_queries);
    if (need > c.batch.seq_len) {
      add("batch.seq_len: the recall task needs at least 2 * (num_pairs + num_queries) = " +
          std::to_string(need) + ", got " + std::to_string(c.batch.seq_len));
    }
    if (d.recall.num_pairs > d.recall.key_vocab) {
      add("data.recall.num_pairs: expected at most data.recall.key_vocab (" +
          std::to_string(d.recall.key_vocab) + ") distinct keys, got " +
          std::to_string(d.recall.num_pairs));
    }
    if (c.model.vocab_size < d.recall.vocab_needed()) {
      add("model.vocab_size: the recall task needs at least 1 + key_vocab + value_vocab = " +
          std::to_string(d.recall.vocab_needed()) + ", got " + std::to_string(c.model.vocab_size));
    }
  }
  if (d.kind == "shards") {
    if (d.train_files.empty()) add("data.train_files: expected a glob pattern for data.kind shards, got \"\"");
    if (d.val_files.empty()) add("data.val_files: expected a glob pattern for data.kind shards, got \"\"");
  }
  // End-of-sequence ids index the embedding: out of range, they would fail deep inside a
  // step (or write a config.json that disagrees with the weights).
  const std::string vocab_range = "[0, model.vocab_size = " + std::to_string(c.model.vocab_size) + ")";
  if (c.model.eos_token_id >= c.model.vocab_size) {
    add("model.eos_token_id: expected -1 (none) or an id in " + vocab_range + ", got " +
        std::to_string(c.model.eos_token_id));
  }
  if (d.eos_id && *d.eos_id >= c.model.vocab_size) {
    add("data.eos_id: expected an id in " + vocab_range + ", got " + std::to_string(*d.eos_id));
  }
  if (d.kind == "shards" && !d.eos_id && c.model.eos_token_id < 0) {
    add("data.eos_id: data.kind shards needs a separator id in " + vocab_range +
        "; null takes model.eos_token_id, which is -1 (none)");
  }
  if (d.kind == "bytes") {
    if (d.text_files.empty()) add("data.text_files: expected a glob pattern for data.kind bytes, got \"\"");
    if (c.model.vocab_size < ByteVocab::kSize) {
      add("model.vocab_size: byte-level data needs at least " + std::to_string(ByteVocab::kSize) +
          " (256 bytes + BOS, EOS, PAD), got " + std::to_string(c.model.vocab_size));
    }
  }
  if (d.format != "llm.c" && d.kind != "shards") {
    add("data.format: only data.kind shards reads files of a format, got data.format \"" + d.format +
        "\" with data.kind \"" + d.kind + "\"");
  }
  if (d.pack_documents && d.kind != "shards" && d.kind != "random") {
    add("data.pack_documents: only data.kind shards or random packs documents, got data.kind \"" + d.kind + "\"");
  }
  if (d.kind == "random" && d.pack_documents && d.random_doc_len == 0) {
    add("data.random_doc_len: data.kind random with pack_documents needs a document length > 0, got 0");
  }
  const std::string& dev = c.device;
  const bool cuda_index = dev.rfind("cuda:", 0) == 0 && dev.size() > 5 &&
                          dev.find_first_not_of("0123456789", 5) == std::string::npos;
  if (dev != "auto" && dev != "cpu" && dev != "cuda" && !cuda_index) {
    add("device: expected auto, cpu, cuda or cuda:N, got \"" + dev + "\"");
  }
  if (c.logging.run_dir.empty()) add("logging.run_dir: expected a directory, got \"\"");
  return problems;
}

TrainConfig config_from_yaml(const std::string& yaml_text,
                             const std::vector<std::string>& overrides) {
  TrainConfig config;
  const ConfigSchema schema = make_schema(config);
  std::vector<std::string> problems;
  try {
    const auto more = schema.apply_yaml(YAML::Load(yaml_text));
    problems.insert(problems.end(), more.begin(), more.end());
  } catch (const YAML::Exception& e) {
    problems.push_back(std::string("<yaml>: cannot parse: ") + e.what());
  }
  for (const auto& o : overrides) {
    const auto more = schema.apply_override(o);
    for (const auto& m : more) problems.push_back(m + " (from --set " + o + ")");
  }
  if (problems.empty()) problems = check_config(config);
  if (!problems.empty()) throw ConfigError(problems);
  return config;
}

TrainConfig load_config(const std::string& path, const std::vector<std::string>& overrides) {
  // An ifstream opens a directory and reads it as empty: the defaults would train.
  if (core::is_directory(path)) throw ConfigError({path + ": is a directory, expected a YAML file"});
  std::ifstream in(path);
  if (!in) throw ConfigError({path + ": cannot open the config file"});
  std::stringstream text;
  text << in.rdbuf();
  try {
    return config_from_yaml(text.str(), overrides);
  } catch (const ConfigError& e) {
    std::vector<std::string> problems;
    for (const auto& p : e.problems()) problems.push_back(path + ": " + p);
    throw ConfigError(problems);
  }
}

std::vector<std::pair<std::string, std::string>> model_architecture(const TrainConfig& config) {
  // Fields that only choose the initialisation, the compute path or token ids (role kFree):
  // a resumed run may change them without changing what the saved weights mean.
  TrainConfig copy = config;
  const ConfigSchema schema = make_schema(copy);
  std::vector<std::pair<std::string, std::string>> out;
  nn::for_each_field([&](const auto& field) {
    if (field.role == nn::FieldRole::kFree) return;
    const std::string path = std::string("model.") + field.name;
    out.emplace_back(path, schema.value(path));
  });
  out.emplace_back("model.attn", schema.value("model.attn"));  // which layers are attention, their shapes
  return out;
}

std::string to_yaml(const TrainConfig& config) {
  TrainConfig copy = config;
  return make_schema(copy).to_yaml_string();
}

}  // namespace comba::train
