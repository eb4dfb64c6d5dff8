// Knobs of data-parallel training (see distributed.h). Who takes part (rank, world size,
// rendezvous address) comes from the torchrun environment, not from the config, so that
// one config runs unchanged on any number of processes.
#pragma once
#include <cstdint>

namespace comba::train {

struct DistributedOptions {
  // Longest wait for another rank in any collective or rendezvous before the run stops
  // with an error naming the ranks that did not arrive.
  double timeout_s = 600;
  // Gradients are all-reduced in buckets of about this many MiB, each launched as soon as
  // its last gradient is accumulated during backward.
  double bucket_mb = 25;
};

}  // namespace comba::train
