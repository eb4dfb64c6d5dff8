// comba-export: writes the model of a comba-train run as a Hugging Face style folder
// (config.json with fla's keys + safetensors) that fla, transformers and safetensors open.
//
//   comba-export RUN_DIR OUT_DIR [--checkpoint FILE] [--dtype float32|bfloat16|float16]
//                [--max-shard-bytes N] [--tokenizer tokenizer.model]
//
// The model config comes from RUN_DIR/config.yaml (the resolved config the trainer writes);
// the weights from the newest checkpoint that reads whole (or --checkpoint), sub-archive
// "model" of the trainer's checkpoint payload.
#include <torch/serialize/input-archive.h>
#include <torch/torch.h>

#include <iostream>
#include <string>

#include "comba/core/file_util.h"
#include "comba/io/pretrained.h"
#include "comba/train/checkpoint.h"
#include "comba/train/checkpoint_file.h"
#include "comba/train/config.h"

namespace {

constexpr const char* kUsage =
    "usage: comba-export RUN_DIR OUT_DIR [options]\n"
    "  --checkpoint FILE      a checkpoint file (default: the newest readable one of the run)\n"
    "  --dtype NAME           float32 | bfloat16 | float16 (default: as trained, float32)\n"
    "  --max-shard-bytes N    split weights into shards of at most N bytes (default 5000000000)\n"
    "  --tokenizer FILE       copy this SentencePiece model into OUT_DIR as tokenizer.model\n";

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "comba-export: " << message << "\n" << kUsage;
  std::exit(2);
}

struct Args {
  std::string run_dir, out_dir, checkpoint, dtype, tokenizer;
  int64_t max_shard_bytes = 5'000'000'000;
};

Args parse(int argc, char** argv) {
  Args a;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error("argument " + s + " expects a value");
      return argv[++i];
    };
    if (s == "--checkpoint") a.checkpoint = value();
    else if (s == "--dtype") a.dtype = value();
    else if (s == "--tokenizer") a.tokenizer = value();
    else if (s == "--max-shard-bytes") {
      const std::string v = value();
      try {
        a.max_shard_bytes = std::stoll(v);
      } catch (const std::exception&) {
        usage_error("argument --max-shard-bytes expected an integer, got \"" + v + "\"");
      }
      if (a.max_shard_bytes <= 0) usage_error("argument --max-shard-bytes expected > 0, got " + v);
    } else if (s == "-h" || s == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (s.rfind("--", 0) == 0) usage_error("unknown argument " + s);
    else positional.push_back(s);
  }
  if (positional.size() != 2) usage_error("expected RUN_DIR and OUT_DIR, got " + std::to_string(positional.size()) + " paths");
  a.run_dir = positional[0];
  a.out_dir = positional[1];
  if (!a.dtype.empty() && a.dtype != "float32" && a.dtype != "bfloat16" && a.dtype != "float16") {
    usage_error("argument --dtype expected float32, bfloat16 or float16, got \"" + a.dtype + "\"");
  }
  return a;
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
  const Args args = parse(argc, argv);
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
    torch::serialize::InputArchive archive;
    archive.load_from([&](uint64_t pos, void* buf, size_t n) { return file.read(pos, buf, n); },
                      [&] { return static_cast<size_t>(file.payload_size()); }, torch::kCPU);
    torch::serialize::InputArchive model_archive;
    if (!archive.try_read("model", model_archive)) {
      throw std::runtime_error(ckpt_path + ": no \"model\" archive in the checkpoint payload");
    }
    // Shape-checked (Module::load takes any shape): config.yaml and the weights must agree.
    comba::train::load_module_state(*model, model_archive);
    c10::IValue step(int64_t{-1});
    archive.try_read("step", step);

    comba::io::SaveOptions options;
    options.max_shard_bytes(args.max_shard_bytes).tokenizer_model(args.tokenizer);
    if (args.dtype == "bfloat16") options.dtype(torch::kBFloat16);
    if (args.dtype == "float16") options.dtype(torch::kHalf);
    if (args.dtype == "float32") options.dtype(torch::kFloat);
    const nlohmann::ordered_json extra = {
        {"comba_export", {{"checkpoint", comba::core::absolute_path(ckpt_path)}, {"step", step.isInt() ? step.toInt() : -1}}}};
    comba::io::save_pretrained(model, args.out_dir, options, extra);
    std::cout << nlohmann::json({{"out_dir", args.out_dir}, {"checkpoint", ckpt_path},
                                 {"step", step.isInt() ? step.toInt() : -1},
                                 {"parameters", model->parameters().size()}})
                     .dump()
              << "\n";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    std::cerr << "comba-export: " << what.substr(0, what.find("\nException raised from")) << "\n";
    return 1;
  }
  return 0;
}
