// The full training state in one checkpoint file: model weights, AdamW state, step,
// tokens seen, data position and RNG states (the schedule is a function of the step).
// Written through checkpoint_file.h (atomic, checksummed); loading walks back from the
// newest file to the newest one that reads whole.
#pragma once
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace comba::train {

struct TrainState {
  int64_t step = 0;           // optimizer steps done
  int64_t data_position = 0;  // index of the next training micro-batch
  int64_t tokens_seen = 0;
};

// Serialises everything and writes <dir>/step_<step>.ckpt, then keeps the newest keep_last.
void save_checkpoint(const std::string& dir, const TrainState& state,
                     const torch::nn::Module& model, const torch::optim::Optimizer& optimizer,
                     int64_t keep_last);

struct LoadedCheckpoint {
  TrainState state;
  std::string path;
  std::vector<std::string> skipped;  // newer files that failed, with the reason
};

// Restores the newest readable checkpoint of `dir` into model and optimizer (tensors are
// loaded onto each parameter's device) and the RNG states; nullopt if none is readable
// (the reasons are in *skipped when given). Damaged files (cut short, checksum mismatch)
// are renamed to <name>.unreadable so that they no longer count as checkpoints.
std::optional<LoadedCheckpoint> load_latest_checkpoint(const std::string& dir,
                                                       torch::nn::Module& model,
                                                       torch::optim::Optimizer& optimizer,
                                                       std::vector<std::string>* skipped = nullptr);

// Restores the checkpoint at `path` (the one another rank chose); throws with the reason
// when it cannot be read or does not fit. Moves nothing aside.
LoadedCheckpoint load_checkpoint(const std::string& path, torch::nn::Module& model,
                                 torch::optim::Optimizer& optimizer);

}  // namespace comba::train
