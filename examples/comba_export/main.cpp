// comba-export: writes the model of a comba-train run as a Hugging Face style folder
// (config.json with fla's keys + safetensors) that fla, transformers and safetensors open.
//
//   comba-export RUN_DIR OUT_DIR [--checkpoint FILE] [--dtype float32|bfloat16|float16]
//                [--max-shard-bytes N] [--tokenizer tokenizer.model] [--debug]
//
// The model config comes from RUN_DIR/config.yaml (the resolved config the trainer writes);
// the weights from the newest checkpoint that reads whole (or --checkpoint), sub-archive
// "model" of the trainer's checkpoint payload.
#include <torch/serialize/input-archive.h>
#include <torch/torch.h>

#include <fstream>
#include <iostream>
#include <optional>
#include <string>

#include "comba/core/cli.h"
#include "comba/core/file_util.h"
#include "comba/io/pretrained.h"
#include "comba/io/tokenizer.h"
#include "comba/train/checkpoint/checkpoint.h"
#include "comba/train/checkpoint/checkpoint_file.h"
#include "comba/train/config/config.h"

namespace {

namespace cli = comba::cli;

struct Args {
  std::string run_dir, out_dir, checkpoint, dtype, tokenizer;
  int64_t max_shard_bytes = 5'000'000'000;
  bool debug = false;
};

// --tokenizer FILE must be a SentencePiece model (it is copied in as tokenizer.model, and
// generate and load_pretrained load it from there): with SentencePiece in the build it
// must load; without, it must at least be a non-empty file that starts like a serialized
// ModelProto (field 1, its pieces: byte 0x0a).
CLI::Validator sentencepiece_model() {
  return CLI::Validator(
      [](std::string& path) -> std::string {
        if (!comba::core::is_regular_file(path)) return path + ": not a regular file";
        if (comba::io::Tokenizer::available()) {
          try {
            (void)comba::io::Tokenizer(path);
            return {};
          } catch (const std::exception& e) {
            return path + ": not a SentencePiece model (" + e.what() + ")";
          }
        }
        std::ifstream in(path, std::ios::binary);
        char first = 0;
        if (!in.get(first)) return path + ": not a SentencePiece model (empty or unreadable)";
        if (static_cast<unsigned char>(first) != 0x0a) {
          return path + ": not a SentencePiece model (a serialized ModelProto starts with byte 0x0a)";
        }
        return {};
      },
      "", "FILE");
}

std::optional<int> parse(int argc, char** argv, Args& a) {
  CLI::App app{"Writes the model of a comba-train run as a Hugging Face style folder (config.json with "
               "fla's keys + safetensors).",
               "comba-export"};
  cli::configure(app);
  app.add_option("RUN_DIR", a.run_dir, "a comba-train run directory (holds config.yaml)")->required();
  app.add_option("OUT_DIR", a.out_dir, "the model folder to write")->required();
  app.add_option("--checkpoint", a.checkpoint, "a checkpoint file (default: the newest readable one of the run)");
  app.add_option("--dtype", a.dtype, "weights' dtype (default: as trained, float32)")
      ->check(cli::one_of({"float32", "bfloat16", "float16"}));
  app.add_option("--max-shard-bytes", a.max_shard_bytes, "split weights into shards of at most N bytes")
      ->check(cli::integer_at_least(1));
  app.add_option("--tokenizer", a.tokenizer, "copy this SentencePiece model into OUT_DIR as tokenizer.model")
      ->check(sentencepiece_model());
  cli::add_debug_flag(app, a.debug);
  return cli::parse(app, argc, argv);
}

// The newest checkpoint of `dir` whose frame reads whole, or --checkpoint's file; opened,
// not read into memory.
comba::train::CheckpointReader open_checkpoint(const std::string& dir, const std::string& chosen) {
  std::string why;
  if (!chosen.empty()) {
    auto file = comba::train::CheckpointReader::open(chosen, &why);
    if (!file) throw std::runtime_error(why);
    return std::move(*file);
  }
  const auto found = comba::train::list_checkpoints(dir);
  if (found.empty()) throw std::runtime_error(dir + ": no checkpoints (expected step_*.ckpt files)");
  std::string reasons;
  for (auto it = found.rbegin(); it != found.rend(); ++it) {
    auto file = comba::train::CheckpointReader::open(it->second, &why);
    if (file) return std::move(*file);
    reasons += "\n  " + why;
  }
  throw std::runtime_error(dir + ": no readable checkpoint:" + reasons);
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (const auto status = parse(argc, argv, args)) return *status;
  try {
    const std::string config_path = comba::core::join_path(args.run_dir, "config.yaml");
    if (!comba::core::path_exists(config_path)) throw std::runtime_error(config_path + ": missing (is " + args.run_dir + " a comba-train run?)");
    const comba::train::TrainConfig config = comba::train::load_config(config_path);
    // The run's own checkpoint folder; a relative checkpoint.dir was relative to where the
    // trainer ran, so the run directory's checkpoints/ is the fallback.
    std::string ckpt_dir = comba::core::join_path(args.run_dir, "checkpoints");
    if (!config.checkpoint.dir.empty() && comba::core::is_directory(config.checkpoint.dir)) ckpt_dir = config.checkpoint.dir;
    const comba::train::CheckpointReader file = open_checkpoint(ckpt_dir, args.checkpoint);
    const std::string& ckpt_path = file.path();

    comba::nn::CombaForCausalLM model(config.model);
    // Shape-checked (Module::load takes any shape): config.yaml and the weights must agree.
    const int64_t step = comba::train::load_model_weights(file, *model);

    comba::io::SaveOptions options;
    options.max_shard_bytes(args.max_shard_bytes).tokenizer_model(args.tokenizer);
    if (args.dtype == "bfloat16") options.dtype(torch::kBFloat16);
    if (args.dtype == "float16") options.dtype(torch::kHalf);
    if (args.dtype == "float32") options.dtype(torch::kFloat);
    const nlohmann::ordered_json extra = {
        {"comba_export", {{"checkpoint", comba::core::absolute_path(ckpt_path)}, {"step", step}}}};
    comba::io::save_pretrained(model, args.out_dir, options, extra);
    std::cout << nlohmann::json({{"out_dir", args.out_dir}, {"checkpoint", ckpt_path},
                                 {"step", step},
                                 {"parameters", model->parameters().size()}})
                     .dump()
              << "\n";
  } catch (const std::exception& e) {
    return cli::report_error("comba-export", e, args.debug);
  }
  return 0;
}
