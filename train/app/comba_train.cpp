// comba-train: trains a Comba language model from a YAML config.
//
//   comba-train CONFIG.yaml [--set key.path=value ...] [--resume | --no-resume]
//   comba-train --help [CONFIG.yaml]   (every key with its current value)
//
// Exit status: 0 trained (or stopped cleanly on SIGINT/SIGTERM/train.stop_at_step),
// 2 bad command line or config, 3 non-finite loss or gradient, 1 anything else. A failure
// prints its message; the C++ backtrace too at logging.level: debug (or COMBA_DEBUG=1).
// The last stdout line is a JSON summary (tokens/s, step time, peak memory, final eval).
// Data parallel: `torchrun --nproc-per-node=N --no-python comba-train CONFIG.yaml` (or the
// torchrun environment variables set by hand); rank 0 logs and prints the summary.
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "comba/core/cli.h"
#include "comba/core/log.h"
#include "comba/train/config/config.h"
#include "comba/train/metrics/metrics_log.h"
#include "comba/train/trainer.h"

namespace {

namespace cli = comba::cli;

struct Args {
  std::string config_path;
  std::vector<std::string> overrides;
  comba::train::ResumeMode resume = comba::train::ResumeMode::automatic;
  bool help = false;
};

// --help is the program's own: after the options it lists every config key with its value
// (from CONFIG.yaml when one is given), so a config file does not have to come with it.
std::optional<int> parse_args(int argc, char** argv, CLI::App& app, Args& args) {
  cli::configure(app);
  app.set_help_flag();
  app.add_flag("-h,--help", args.help, "this help, then every config key with its value (from CONFIG.yaml if given)");
  app.add_option("CONFIG.yaml", args.config_path, "the run's config (e.g. configs/default.yaml)");
  app.add_option("--set", args.overrides, "override one config key, key.path=value (repeatable), e.g. "
                                          "--set train.max_steps=20")
      ->allow_extra_args(false);
  bool resume = false, no_resume = false;
  auto* required = app.add_flag("--resume", resume, "continue from the newest checkpoint; fail if there is none");
  app.add_flag("--no-resume", no_resume, "start over even if the run directory holds checkpoints")->excludes(required);
  app.footer("By default a run resumes from its checkpoint directory when one is there.");
  if (const auto status = cli::parse(app, argc, argv)) return status;
  if (resume) args.resume = comba::train::ResumeMode::required;
  if (no_resume) args.resume = comba::train::ResumeMode::never;
  if (args.config_path.empty() && !args.help) {
    return cli::usage_error(app, "expected a config file (e.g. configs/default.yaml)");
  }
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace comba::train;
  Args args;
  CLI::App app{"Trains a Comba language model from a YAML config.", "comba-train"};
  if (const auto status = parse_args(argc, argv, app, args)) return *status;
  TrainConfig config;
  try {
    if (!args.config_path.empty()) config = load_config(args.config_path, args.overrides);
  } catch (const ConfigError& e) {
    std::cerr << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    return cli::report_error("comba-train", e, cli::debug_from_env(), cli::kUsageError);
  }
  if (args.help) {
    std::cout << app.help() << "\nConfig keys (current values):\n" << make_schema(config).describe();
    return 0;
  }
  // The C++ backtrace of a failure only for those who asked for debug output.
  const bool debug = config.logging.level == "debug" || cli::debug_from_env();
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
    comba::log::error("comba-train: " + cli::error_text(e, debug));
    return 1;
  }
}
