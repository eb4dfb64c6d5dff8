// comba-eval: the loss of a model over a whole validation set, as one JSON line
// {tokens, loss, perplexity, bits_per_byte (byte data only), seconds}; or, with --choices,
// multiple-choice accuracy {items, accuracy, accuracy_norm, seconds}.
//
//   comba-eval (--run-dir DIR | --model FOLDER) [--data 'glob'] [--seq-len N] [--batch N]
//              [--max-tokens N] [--packed] [--choices FILE.jsonl] [--device DEV] [--debug]
//
// --run-dir: the run's config.yaml and its newest readable checkpoint; without --data, the
// run's own validation data (data.val_files, or the held-out bytes of data.text_files).
// --model: a save_pretrained / comba-export folder; --data (llm.c token shards) is needed.
// The windows are the trainer's eval.full_pass ones (train/src/evaluate.cpp).
// --choices: lines {"context": [ids] or "text", "choices": [...], "label": i}; each choice
// scored by the summed log-likelihood of its tokens (train/src/choice_scorer.cpp); text
// needs the folder's tokenizer.model.
#include <torch/serialize/input-archive.h>
#include <torch/torch.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "comba/core/cli.h"
#include "comba/core/file_util.h"
#include "comba/io/pretrained.h"
#include "comba/io/tokenizer.h"
#include "comba/train/checkpoint/checkpoint.h"
#include "comba/train/checkpoint/checkpoint_file.h"
#include "comba/train/choice_scorer.h"
#include "comba/train/config/config.h"
#include "comba/train/data/data_source.h"
#include "comba/train/evaluate.h"
#include "comba/train/precision.h"

namespace {

namespace cli = comba::cli;
namespace train = comba::train;

struct Args {
  std::string run_dir, model_dir, data, choices, device = "auto";
  int64_t seq_len = 0, batch = 1, max_tokens = 0;
  bool packed = false, debug = false;
};

std::optional<int> parse(int argc, char** argv, Args& a) {
  CLI::App app{"Loss, perplexity and bits per byte of a comba-train run or a model folder over a whole "
               "validation set, as one JSON line.",
               "comba-eval"};
  cli::configure(app);
  auto* run = app.add_option("--run-dir", a.run_dir, "a comba-train run directory (config.yaml + checkpoints)");
  auto* model = app.add_option("--model", a.model_dir, "a model folder written by save_pretrained / comba-export");
  run->excludes(model);
  auto* data = app.add_option("--data", a.data, "glob of llm.c token shards (default with --run-dir: the run's validation data)");
  app.add_option("--seq-len", a.seq_len, "tokens per window (default: the run's batch.seq_len; 1024 with --model)")
      ->check(cli::integer_at_least(2));
  app.add_option("--batch", a.batch, "windows per forward")->check(cli::integer_at_least(1));
  app.add_option("--max-tokens", a.max_tokens, "read at most N tokens (0: all)")->check(cli::integer_at_least(0));
  auto* choices = app.add_option("--choices", a.choices, "score a JSONL file of {context, choices, label} instead")
      ->check(CLI::ExistingFile);
  choices->excludes(data);
  app.add_flag("--packed", a.packed, "split documents at EOS and run each alone (cu_seqlens) instead of windows across them");
  app.add_option("--device", a.device, "auto, cpu, cuda or cuda:N")->check(cli::one_of({"auto"}) | cli::device_name());
  cli::add_debug_flag(app, a.debug);
  if (const auto status = cli::parse(app, argc, argv)) return status;
  if (a.run_dir.empty() && a.model_dir.empty()) return cli::usage_error(app, "--run-dir or --model: one is required");
  if (!a.model_dir.empty() && a.data.empty() && a.choices.empty()) return cli::usage_error(app, "--data: required with --model");
  return std::nullopt;
}

// The newest checkpoint of `dir` whose frame reads whole.
train::CheckpointReader newest_checkpoint(const std::string& dir) {
  const auto found = train::list_checkpoints(dir);
  if (found.empty()) throw std::runtime_error("--run-dir: " + dir + ": no checkpoints (expected step_*.ckpt files)");
  std::string why, reasons;
  for (auto it = found.rbegin(); it != found.rend(); ++it) {
    auto file = train::CheckpointReader::open(it->second, &why);
    if (file) return std::move(*file);
    reasons += "\n  " + why;
  }
  throw std::runtime_error("--run-dir: " + dir + ": no readable checkpoint:" + reasons);
}

comba::nn::CombaForCausalLM load_run_model(const std::string& run_dir, const train::TrainConfig& config) {
  std::string ckpt_dir = comba::core::join_path(run_dir, "checkpoints");
  if (!config.checkpoint.dir.empty() && comba::core::is_directory(config.checkpoint.dir)) ckpt_dir = config.checkpoint.dir;
  const train::CheckpointReader file = newest_checkpoint(ckpt_dir);
  comba::nn::CombaForCausalLM model(config.model);
  train::load_model_weights(file, *model);
  return model;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (const auto status = parse(argc, argv, args)) return *status;
  try {
    const auto started = std::chrono::steady_clock::now();
    const torch::Device device = train::resolve_device(args.device);
    comba::nn::CombaForCausalLM model{nullptr};
    std::optional<train::TrainConfig> config;
    std::shared_ptr<comba::io::Tokenizer> tokenizer;
    int64_t eos = -1;
    if (!args.run_dir.empty()) {
      const std::string config_path = comba::core::join_path(args.run_dir, "config.yaml");
      if (!comba::core::path_exists(config_path)) {
        throw std::runtime_error("--run-dir: " + config_path + ": missing (is " + args.run_dir + " a comba-train run?)");
      }
      config = train::load_config(config_path);
      model = load_run_model(args.run_dir, *config);
      eos = config->data.eos_id.value_or(config->model.eos_token_id);
    } else {
      auto loaded =
          comba::io::load_pretrained(args.model_dir, comba::io::LoadOptions().load_tokenizer(!args.choices.empty()));
      model = loaded.model;
      tokenizer = loaded.tokenizer;
      eos = model->config().eos_token_id;
    }
    model->to(device);

    if (!args.choices.empty()) {
      train::EncodeFn encode;
      if (tokenizer) {
        encode = [&](const std::string& text) {
          const auto ids = tokenizer->encode(text);
          return std::vector<int64_t>(ids.begin(), ids.end());
        };
      }
      const auto items = train::read_choices(args.choices, encode, model->config().vocab_size, "--choices");
      const train::ChoiceResult r = train::score_choices(model, items, device);
      nlohmann::ordered_json line = {{"items", r.items}, {"accuracy", r.accuracy}, {"accuracy_norm", r.accuracy_norm}};
      line["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      std::cout << line.dump() << std::endl;
      return 0;
    }

    // The tokens: --data's shards, or the run's own validation data.
    std::vector<train::TokenShard> shards;  // kept mapped while evaluating
    std::unique_ptr<train::DataSource> source;
    train::ValidationSet set;
    std::string key = "--data";
    if (!args.data.empty()) {
      const auto paths = train::glob_files(args.data);
      if (paths.empty()) throw std::runtime_error("--data: no file matches \"" + args.data + "\"");
      for (const auto& p : paths) {
        comba::core::require_regular_file(p, "--data");
        shards.emplace_back(p);
      }
      for (const auto& s : shards) {
        set.spans.push_back(s.tokens());
        set.names.push_back(s.path());
        set.text_bytes.push_back(s.text_bytes());  // from comba-tokenize's header, or -1
      }
    } else {
      source = train::make_data_source(config->data, config->batch, static_cast<uint64_t>(config->seed),
                                       config->model.vocab_size, config->model.eos_token_id);
      set = source->validation_set();
      key = "data.val_files";
      if (set.spans.empty()) {
        throw std::runtime_error("--data: the run's data.kind \"" + config->data.kind +
                                 "\" has no validation files; name shards with --data");
      }
    }

    train::FullPassOptions o;
    o.seq_len = args.seq_len > 0 ? args.seq_len : (config ? config->batch.seq_len : 1024);
    o.rows = args.batch;
    o.max_tokens = args.max_tokens;
    o.packed = args.packed;
    o.eos_id = eos;
    o.vocab_size = model->config().vocab_size;
    o.key = key;
    if (o.packed && eos < 0) throw std::runtime_error("--packed: the model has no eos_token_id to split documents at");
    const train::FullPassResult r = train::full_pass_result(train::full_pass_sums(model, set, o, device), set.bytes);
    if (r.tokens == 0) throw std::runtime_error(key + ": no token to predict (every window is shorter than 2 tokens)");
    nlohmann::ordered_json line = {{"tokens", r.tokens}, {"loss", r.loss}, {"perplexity", r.perplexity}};
    if (r.bits_per_byte >= 0) line["bits_per_byte"] = r.bits_per_byte;
    line["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::cout << line.dump() << std::endl;
  } catch (const std::exception& e) {
    return cli::report_error("comba-eval", e, args.debug);
  }
  return 0;
}
