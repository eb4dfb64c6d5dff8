// Peak memory of the run for benchmark reports: the CUDA caching allocator's peak on a
// GPU, the process's peak resident set on the CPU.
#pragma once
#include <torch/types.h>

namespace comba::train {

double peak_memory_bytes(const torch::Device& device);
void reset_peak_memory(const torch::Device& device);

}  // namespace comba::train
