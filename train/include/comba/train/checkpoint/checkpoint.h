// The full training state in one checkpoint file: model weights, AdamW state, step,
// tokens seen, data position and RNG states (the schedule is a function of the step).
// Written through checkpoint_file.h (atomic, checksummed); loading walks back from the
// newest file to the newest one that reads whole. A checkpoint also records the model
// architecture it was made with, so that resuming with another one fails naming the key
// instead of loading weights that do not belong to the model.
#pragma once
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/input-archive.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace comba::train {

struct TrainState {
  int64_t step = 0;           // optimizer steps done
  int64_t data_position = 0;  // index of the next training micro-batch
  int64_t tokens_seen = 0;
};

// The settings that decide what the weights mean, as (key path, value text) pairs, e.g.
// ("model.hidden_size", "64"); see model_architecture() in config.h.
using Architecture = std::vector<std::pair<std::string, std::string>>;

// The checkpoint was made for another model (an architecture key or a tensor shape
// differs). Loading stops at once: the older checkpoints of the run would not fit either.
class CheckpointMismatch : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Serialises everything and writes <dir>/step_<step>.ckpt, then keeps the newest keep_last.
// `architecture` is stored with it (an empty one stores nothing).
void save_checkpoint(const std::string& dir, const TrainState& state,
                     const torch::nn::Module& model, const torch::optim::Optimizer& optimizer,
                     int64_t keep_last, const Architecture& architecture = {});

// Copies the tensors of a Module::save archive into `module` (parameters and buffers,
// recursively), after checking that every one is there with the module's shape; throws
// CheckpointMismatch naming the tensor (dotted path) and both shapes. Unlike Module::load,
// which swaps in whatever shape the archive holds.
void load_module_state(torch::nn::Module& module, torch::serialize::InputArchive& archive);

class CheckpointReader;
// The model weights of an open checkpoint file into `module` (shape-checked as above; the
// tensors are read onto the CPU); throws naming the file when it holds no model archive.
// Returns the step the checkpoint was written at (-1 when it records none).
int64_t load_model_weights(const CheckpointReader& file, torch::nn::Module& module);

struct LoadedCheckpoint {
  TrainState state;
  std::string path;
  std::vector<std::string> skipped;  // newer files that failed, with the reason
};

// Restores the newest readable checkpoint of `dir` into model and optimizer (tensors are
// loaded onto each parameter's device) and the RNG states; nullopt if none is readable
// (the reasons are in *skipped when given). Damaged files (cut short, checksum mismatch)
// are renamed to <name>.unreadable so that they no longer count as checkpoints. A file
// whose recorded architecture differs from `expected` (keys missing on either side are
// not compared), or whose tensors have other shapes, throws CheckpointMismatch.
std::optional<LoadedCheckpoint> load_latest_checkpoint(const std::string& dir,
                                                       torch::nn::Module& model,
                                                       torch::optim::Optimizer& optimizer,
                                                       std::vector<std::string>* skipped = nullptr,
                                                       const Architecture& expected = {});

// Restores the checkpoint at `path` (the one another rank chose); throws with the reason
// when it cannot be read or does not fit (CheckpointMismatch as above). Moves nothing aside.
LoadedCheckpoint load_checkpoint(const std::string& path, torch::nn::Module& model,
                                 torch::optim::Optimizer& optimizer,
                                 const Architecture& expected = {});

}  // namespace comba::train
