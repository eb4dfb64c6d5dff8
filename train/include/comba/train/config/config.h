// The whole training configuration: every component's options struct composed in one
// place, the one mapping of YAML keys onto them, and the checks that span components.
// Loading reports every problem (unknown key, wrong type, out-of-range value) with its key
// path before any work starts.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "comba/nn/config.h"
#include "comba/train/config/checkpoint_options.h"
#include "comba/train/config/config_schema.h"
#include "comba/train/config/data_options.h"
#include "comba/train/config/distributed_options.h"
#include "comba/train/config/optimizer_options.h"
#include "comba/train/schedule.h"
#include "comba/train/config/trainer_options.h"

namespace comba::train {

struct TrainConfig {
  TrainConfig();  // defaults: the built-in task (configs/default.yaml says the same)

  nn::CombaConfig model;
  // model.init_from: a Hugging Face / fla model folder whose config.json decides the
  // architecture and whose weights start a fresh run (a resumed run keeps its checkpoint).
  std::string model_init_from;
  DataOptions data;
  BatchOptions batch;
  OptimizerOptions optimizer;
  ScheduleOptions schedule;
  EvalOptions eval;
  CheckpointOptions checkpoint;
  LoggingOptions logging;
  RunOptions train;
  DistributedOptions distributed;  // data parallelism; ranks come from the torchrun environment
  std::string precision = "fp32";  // fp32 | bf16 (bf16 autocast, fp32 master weights) | fp64
  std::string device = "auto";     // auto (the GPU when present) | cpu | cuda | cuda:N
  int64_t seed = 0;

  std::string checkpoint_dir() const;
};

// Every problem found, one line each, "key.path: expected ..., got ...".
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<std::string> problems);
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  std::vector<std::string> problems_;
};

// Binds every key to a field of `config` (which must outlive the schema).
ConfigSchema make_schema(TrainConfig& config);

// Defaults <- YAML text <- overrides ("key.path=value"), then cross-component checks.
// Throws ConfigError listing every problem.
TrainConfig config_from_yaml(const std::string& yaml_text,
                             const std::vector<std::string>& overrides = {});
TrainConfig load_config(const std::string& path, const std::vector<std::string>& overrides = {});

// Checks that involve more than one key (each message names the key to change).
std::vector<std::string> check_config(const TrainConfig& config);

// The model.* keys that decide what trained weights mean (shapes and the function they
// compute), with their values as to_yaml writes them: what a checkpoint records and a
// resumed run must match. Leaves out init-only keys, model.attn_mode and token ids.
std::vector<std::pair<std::string, std::string>> model_architecture(const TrainConfig& config);

// The resolved config as YAML; config_from_yaml(to_yaml(c)) == c.
std::string to_yaml(const TrainConfig& config);

}  // namespace comba::train
