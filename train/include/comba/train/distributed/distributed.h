// Data-parallel training across processes: who takes part, how they meet, how they talk
// and how they stop together.
//
// Launch convention of torchrun: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT
// come from the environment (`torchrun --nproc-per-node=N --no-python comba-train cfg.yaml`
// sets them); without RANK and WORLD_SIZE a program stays one plain process. Every rank
// joins a c10d::TCPStore at MASTER_ADDR:MASTER_PORT (hosted by rank 0, or by torchrun's
// agent when TORCHELASTIC_USE_AGENT_STORE=True), which carries
//   - host-side agreements, in the same order on every rank (all_gather and friends),
//   - the CPU collectives (StoreBackend; GPUs use c10d::ProcessGroupNCCL),
//   - a failure announcement: a rank that fails says why under one key; a watchdog thread
//     on every other rank sees it within ~0.1 s, makes every wait of this rank throw
//     PeerFailureError (aborting NCCL's communicators), and ends the process if it has not
//     stopped on its own within a grace period. Every wait also has a deadline
//     (distributed.timeout_s) whose error names the ranks that did not arrive.
#pragma once
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "comba/train/config/distributed_options.h"
#include "comba/train/distributed/store_exchange.h"

namespace comba::train {

struct DistributedEnv {
  bool launched = false;  // RANK and WORLD_SIZE are set
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr;
  int master_port = 0;
  bool agent_store = false;  // torchrun's agent hosts the store: every rank is a client
  std::string attempt = "0"; // TORCHELASTIC_RESTART_COUNT: keys of a restarted attempt differ

  // Reads the variables; throws std::invalid_argument naming a variable that is missing
  // or malformed.
  static DistributedEnv from_env();
};

// The device of this rank: "auto" and "cuda" mean cuda:LOCAL_RANK when GPUs are present;
// "cuda:N" is refused when WORLD_SIZE > 1 (every rank would pick the same GPU).
torch::Device device_for_rank(const std::string& name, const DistributedEnv& env);

// What the ranks agree on before each optimizer step: the step's target count over all
// ranks (each rank's loss is divided by it) and whether any rank was asked to stop.
struct StepAgreement {
  int64_t step_targets = 0;
  bool stop = false;
};

class DistributedContext {
 public:
  // Joins the group (rendezvous through the store, then the backend for `device`: NCCL on
  // CUDA, StoreBackend on the CPU) and starts the watchdog.
  DistributedContext(const DistributedEnv& env, const torch::Device& device,
                     const DistributedOptions& options);
  // Without finish(): stops the watchdog, aborts the backend, and on rank 0 keeps the store
  // up a few seconds so that the others can read a failure announced just before.
  ~DistributedContext();
  DistributedContext(const DistributedContext&) = delete;
  DistributedContext& operator=(const DistributedContext&) = delete;

  int rank() const;
  int world_size() const;
  bool is_main() const { return rank() == 0; }
  const torch::Device& device() const;
  const c10::intrusive_ptr<c10d::Backend>& backend() const;
  std::string describe() const;  // "rank 0 of 2, backend comba-store, store at host:port"

  // Host-side collectives (small values, through the store). Every rank calls them in the
  // same order; `what` names the call in timeout errors.
  std::vector<std::string> all_gather(const std::string& mine, const std::string& what);
  std::vector<std::vector<double>> all_gather_doubles(const std::vector<double>& mine,
                                                      const std::string& what);
  std::string broadcast_string(const std::string& value_on_rank0, const std::string& what);

  // Device collectives (through the backend): every rank gets rank 0's values.
  void broadcast_tensors(const std::vector<torch::Tensor>& tensors);

  // The agreement before optimizer step `step` from this rank's target count and stop
  // request. On a GPU one small all-reduce on the device (no round trips to rank 0's store
  // every step; reading the result waits for the device's queued work); on the CPU through
  // the store, like the other host-side agreements.
  StepAgreement agree_on_step(int64_t targets, bool stop_requested, int64_t step);

  // Tells the other ranks that this one fails with `what` (the first announcement wins;
  // none is made once another rank's failure is known). Never throws.
  void announce_failure(const std::string& what) noexcept;

  // The clean end: waits for every rank, shuts the backend down, and lets rank 0 (the
  // store host) leave last.
  void finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace comba::train
