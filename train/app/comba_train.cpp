// comba-train: trains a Comba language model from a YAML config.
//
//   comba-train CONFIG.yaml [--set key.path=value ...] [--resume | --no-resume]
//   comba-train --help [CONFIG.yaml]   (every key with its current value)
//
// Exit status: 0 trained (or stopped cleanly on SIGINT/SIGTERM/train.stop_at_step),
// 2 bad command line or config, 3 non-finite loss or gradient, 1 anything else.
// The last stdout line is a JSON summary (tokens/s, step time, peak memory, final eval).
// Data parallel: `torchrun --nproc-per-node=N --no-python comba-train CONFIG.yaml` (or the
// torchrun environment variables set by hand); rank 0 logs and prints the summary.
#include <iostream>
#include <string>
#include <vector>

#include "comba/core/log.h"
#include "comba/train/config.h"
#include "comba/train/metrics_log.h"
#include "comba/train/trainer.h"

namespace {

constexpr const char* kUsage =
    "usage: comba-train CONFIG.yaml [--set key.path=value ...] [--resume | --no-resume]\n"
    "       comba-train --help [CONFIG.yaml]\n"
    "  --set k=v     override one config key (repeatable), e.g. --set train.max_steps=20\n"
    "  --resume      continue from the newest checkpoint; fail if there is none\n"
    "  --no-resume   start over even if the run directory holds checkpoints\n"
    "By default a run resumes from its checkpoint directory when one is there.\n";

struct Args {
  std::string config_path;
  std::vector<std::string> overrides;
  comba::train::ResumeMode resume = comba::train::ResumeMode::automatic;
  bool help = false;
};

Args parse_args(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      args.help = true;
    } else if (a == "--resume") {
      args.resume = comba::train::ResumeMode::required;
    } else if (a == "--no-resume") {
      args.resume = comba::train::ResumeMode::never;
    } else if (a == "--set") {
      if (i + 1 >= argc) throw std::invalid_argument("--set: expected key.path=value after it");
      args.overrides.emplace_back(argv[++i]);
    } else if (a.rfind("--set=", 0) == 0) {
      args.overrides.push_back(a.substr(6));
    } else if (!a.empty() && a[0] == '-') {
      throw std::invalid_argument("unknown option " + a);
    } else if (args.config_path.empty()) {
      args.config_path = a;
    } else {
      throw std::invalid_argument("expected one config file, got a second one: " + a);
    }
  }
  if (args.config_path.empty() && !args.help) {
    throw std::invalid_argument("expected a config file (e.g. configs/default.yaml)");
  }
  return args;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace comba::train;
  Args args;
  TrainConfig config;
  try {
    args = parse_args(argc, argv);
    if (!args.config_path.empty()) config = load_config(args.config_path, args.overrides);
  } catch (const ConfigError& e) {
    std::cerr << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "comba-train: " << e.what() << "\n" << kUsage;
    return 2;
  }
  if (args.help) {
    std::cout << kUsage << "\nConfig keys (current values):\n" << make_schema(config).describe();
    return 0;
  }
  try {
    Trainer trainer(config, args.resume);
    const TrainSummary s = trainer.run();
    if (s.rank != 0) return 0;  // data parallel: rank 0 reports for all
    JsonLine line = JsonLine()
                        .add("type", "summary")
                        .add("start_step", s.start_step)
                        .add("final_step", s.final_step)
                        .add_bool("stopped_early", s.stopped_early)
                        .add("tokens", s.tokens_seen)
                        .add("elapsed_s", s.elapsed_s)
                        .add("tokens_per_s", s.tokens_per_s)
                        .add("step_time_ms", s.step_time_ms)
                        .add("peak_memory_gib", s.peak_memory_gib)
                        .add("world_size", static_cast<int64_t>(s.world_size));
    if (!s.losses.empty()) line.add("train_loss", s.losses.back().second);
    if (s.last_eval) {
      line.add("eval_loss", s.last_eval->loss);
      if (s.last_eval->accuracy >= 0) line.add("eval_accuracy", s.last_eval->accuracy);
    }
    std::cout << line.str() << std::endl;
    return 0;
  } catch (const NonFiniteError& e) {
    comba::log::error(e.what());
    return 3;
  } catch (const std::exception& e) {
    comba::log::error(std::string("comba-train: ") + e.what());
    return 1;
  }
}
