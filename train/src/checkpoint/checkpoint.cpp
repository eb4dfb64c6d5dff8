// Training-state serialisation (see checkpoint.h). The payload is a LibTorch archive with
// sub-archives "model" and "optimizer" and scalars for the loop state; RNG states are
// the raw generator states of the CPU and of every visible GPU; "architecture" (optional,
// absent in older files) is the model's Architecture as "key=value" lines.
#include "comba/train/checkpoint/checkpoint.h"

#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/torch.h>

#include <cstdio>
#include <map>
#include <sstream>

#include "comba/train/checkpoint/checkpoint_file.h"

namespace comba::train {
namespace {

constexpr int64_t kFormatVersion = 1;

std::vector<at::Generator> generators() {
  std::vector<at::Generator> out = {at::globalContext().defaultGenerator(torch::kCPU)};
  if (torch::cuda::is_available()) {
    for (size_t i = 0; i < torch::cuda::device_count(); ++i) {
      out.push_back(at::globalContext().defaultGenerator(
          torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(i))));
    }
  }
  return out;
}

int64_t read_int(torch::serialize::InputArchive& archive, const std::string& key) {
  c10::IValue value;
  archive.read(key, value);
  return value.toInt();
}

std::string encode(const Architecture& architecture) {
  std::string text;
  for (const auto& [key, value] : architecture) text += key + "=" + value + "\n";
  return text;
}

std::map<std::string, std::string> decode(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

// Every key of `expected` that the checkpoint recorded with another value, in one line.
void check_architecture(torch::serialize::InputArchive& archive, const Architecture& expected) {
  c10::IValue recorded;
  if (expected.empty() || !archive.try_read("architecture", recorded) || !recorded.isString()) {
    return;  // an older checkpoint: the tensor shapes are still checked
  }
  const auto saved = decode(recorded.toStringRef());
  std::string differences;
  for (const auto& [key, value] : expected) {
    const auto found = saved.find(key);
    if (found == saved.end() || found->second == value) continue;
    differences += (differences.empty() ? "" : ", ") + key + " is " + found->second +
                   " there and " + value + " in the config";
  }
  if (!differences.empty()) {
    throw CheckpointMismatch("the checkpoint was made for another model: " + differences);
  }
}

std::string shape_text(at::IntArrayRef sizes) {
  std::string text = "[";
  for (size_t i = 0; i < sizes.size(); ++i) text += (i ? ", " : "") + std::to_string(sizes[i]);
  return text + "]";
}

// Pairs (module tensor, saved tensor) of a module tree, checked before anything is copied.
void collect_tensors(torch::nn::Module& module, torch::serialize::InputArchive& archive,
                     const std::string& prefix,
                     std::vector<std::pair<torch::Tensor, torch::Tensor>>& pairs) {
  const auto take = [&](const std::string& key, const torch::Tensor& target) {
    if (!target.defined()) return;
    torch::Tensor saved;
    if (!archive.try_read(key, saved)) {
      throw CheckpointMismatch("the checkpoint has no tensor " + prefix + key +
                               " (the model has one of shape " + shape_text(target.sizes()) + ")");
    }
    if (saved.sizes() != target.sizes()) {
      throw CheckpointMismatch("tensor " + prefix + key + " has shape " + shape_text(saved.sizes()) +
                               " in the checkpoint and " + shape_text(target.sizes()) +
                               " in the model");
    }
    pairs.emplace_back(target, saved);
  };
  for (const auto& item : module.named_parameters(/*recurse=*/false)) take(item.key(), item.value());
  for (const auto& item : module.named_buffers(/*recurse=*/false)) take(item.key(), item.value());
  for (const auto& child : module.named_children()) {
    if (!child.value()->is_serializable()) continue;
    torch::serialize::InputArchive child_archive;
    if (!archive.try_read(child.key(), child_archive)) {
      throw CheckpointMismatch("the checkpoint has no module " + prefix + child.key());
    }
    collect_tensors(*child.value(), child_archive, prefix + child.key() + ".", pairs);
  }
}

}  // namespace

void load_module_state(torch::nn::Module& module, torch::serialize::InputArchive& archive) {
  std::vector<std::pair<torch::Tensor, torch::Tensor>> pairs;
  collect_tensors(module, archive, "", pairs);
  const torch::NoGradGuard no_grad;
  for (auto& [target, saved] : pairs) target.copy_(saved);
}

int64_t load_model_weights(const CheckpointReader& file, torch::nn::Module& module) {
  torch::serialize::InputArchive archive;
  archive.load_from([&](uint64_t pos, void* buf, size_t n) { return file.read(pos, buf, n); },
                    [&] { return static_cast<size_t>(file.payload_size()); }, torch::kCPU);
  torch::serialize::InputArchive model_archive;
  if (!archive.try_read("model", model_archive)) {
    throw std::runtime_error(file.path() + ": no \"model\" archive in the checkpoint payload");
  }
  load_module_state(module, model_archive);
  c10::IValue step(int64_t{-1});
  archive.try_read("step", step);
  return step.isInt() ? step.toInt() : -1;
}

void save_checkpoint(const std::string& dir, const TrainState& state,
                     const torch::nn::Module& model, const torch::optim::Optimizer& optimizer,
                     int64_t keep_last, const Architecture& architecture) {
  torch::serialize::OutputArchive archive;
  archive.write("format_version", c10::IValue(kFormatVersion));
  if (!architecture.empty()) archive.write("architecture", c10::IValue(encode(architecture)));
  archive.write("step", c10::IValue(state.step));
  archive.write("data_position", c10::IValue(state.data_position));
  archive.write("tokens_seen", c10::IValue(state.tokens_seen));
  torch::serialize::OutputArchive model_archive;
  model.save(model_archive);
  archive.write("model", model_archive);
  torch::serialize::OutputArchive optimizer_archive;
  optimizer.save(optimizer_archive);
  archive.write("optimizer", optimizer_archive);
  auto gens = generators();
  archive.write("rng_count", c10::IValue(static_cast<int64_t>(gens.size())));
  for (size_t i = 0; i < gens.size(); ++i) {
    std::lock_guard<std::mutex> lock(gens[i].mutex());
    archive.write("rng_" + std::to_string(i), gens[i].get_state());
  }
  // Streamed into the file: CPU tensors are written from their own memory, GPU tensors
  // through one host copy at a time, never the whole payload at once.
  write_checkpoint_file(checkpoint_path(dir, state.step), [&](const PayloadSink& sink) {
    // torch's zip writer calls this from C code: a failure is a short count, not an
    // exception (the file writer then reports the system's reason).
    archive.save_to([&](const void* data, size_t size) -> size_t {
      try {
        sink(data, size);
        return size;
      } catch (...) {
        return 0;
      }
    });
  });
  prune_checkpoints(dir, keep_last);
}

namespace {

// Restores one checkpoint payload; throws with the reason when it does not fit.
LoadedCheckpoint restore(const std::string& path, const CheckpointReader& file,
                         torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                         const Architecture& expected) {
  torch::serialize::InputArchive archive;
  // Straight onto the model's device: Module::load would otherwise re-home parameters
  // onto the archive's device. Read from the file on demand (a GPU model's tensors pass
  // through host memory one at a time).
  const auto params = model.parameters();
  archive.load_from([&](uint64_t pos, void* buf, size_t n) { return file.read(pos, buf, n); },
                    [&] { return static_cast<size_t>(file.payload_size()); },
                    params.empty() ? torch::Device(torch::kCPU) : params.front().device());
  if (read_int(archive, "format_version") != kFormatVersion) {
    throw std::runtime_error("unknown checkpoint format version");
  }
  check_architecture(archive, expected);
  LoadedCheckpoint loaded;
  loaded.path = path;
  loaded.state.step = read_int(archive, "step");
  loaded.state.data_position = read_int(archive, "data_position");
  loaded.state.tokens_seen = read_int(archive, "tokens_seen");
  torch::serialize::InputArchive model_archive;
  archive.read("model", model_archive);
  load_module_state(model, model_archive);
  torch::serialize::InputArchive optimizer_archive;
  archive.read("optimizer", optimizer_archive);
  optimizer.load(optimizer_archive);
  // Guard against a model spread over devices: AdamW state goes next to its parameter.
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params()) {
      auto found_state = optimizer.state().find(p.unsafeGetTensorImpl());
      if (found_state == optimizer.state().end()) continue;
      auto& s = static_cast<torch::optim::AdamWParamState&>(*found_state->second);
      if (s.exp_avg().defined()) s.exp_avg(s.exp_avg().to(p.device()));
      if (s.exp_avg_sq().defined()) s.exp_avg_sq(s.exp_avg_sq().to(p.device()));
      if (s.max_exp_avg_sq().defined()) s.max_exp_avg_sq(s.max_exp_avg_sq().to(p.device()));
    }
  }
  auto gens = generators();
  const int64_t saved = read_int(archive, "rng_count");
  for (int64_t i = 0; i < std::min<int64_t>(saved, static_cast<int64_t>(gens.size())); ++i) {
    torch::Tensor rng_state;
    archive.read("rng_" + std::to_string(i), rng_state);
    std::lock_guard<std::mutex> lock(gens[i].mutex());
    gens[i].set_state(rng_state.cpu());
  }
  return loaded;
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace

std::optional<LoadedCheckpoint> load_latest_checkpoint(const std::string& dir,
                                                       torch::nn::Module& model,
                                                       torch::optim::Optimizer& optimizer,
                                                       std::vector<std::string>* skipped,
                                                       const Architecture& expected) {
  auto found = list_checkpoints(dir);
  std::vector<std::string> reasons;
  for (auto it = found.rbegin(); it != found.rend(); ++it) {
    std::string why;
    const auto file = CheckpointReader::open(it->second, &why);
    if (!file) {
      // A damaged file (cut short, corrupted) is moved aside: left in place it would keep
      // a slot of keep_last and could make pruning delete the good checkpoints written
      // after this resume. Files that read whole but do not fit the model stay untouched.
      const std::string aside = it->second + ".unreadable";
      if (std::rename(it->second.c_str(), aside.c_str()) == 0) why += " (moved to " + aside + ")";
      reasons.push_back(why);
      continue;
    }
    try {
      LoadedCheckpoint loaded = restore(it->second, *file, model, optimizer, expected);
      loaded.skipped = reasons;
      if (skipped) *skipped = reasons;
      return loaded;
    } catch (const CheckpointMismatch& e) {
      if (skipped) *skipped = reasons;
      throw CheckpointMismatch(it->second + ": " + e.what());
    } catch (const std::exception& e) {
      reasons.push_back(it->second + ": cannot restore: " + first_line(e.what()));
    }
  }
  if (skipped) *skipped = reasons;
  return std::nullopt;
}

LoadedCheckpoint load_checkpoint(const std::string& path, torch::nn::Module& model,
                                 torch::optim::Optimizer& optimizer, const Architecture& expected) {
  std::string why;
  const auto file = CheckpointReader::open(path, &why);
  if (!file) throw std::runtime_error(why);
  try {
    return restore(path, *file, model, optimizer, expected);
  } catch (const CheckpointMismatch& e) {
    throw CheckpointMismatch(path + ": " + e.what());
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": cannot restore: " + first_line(e.what()));
  }
}

}  // namespace comba::train
