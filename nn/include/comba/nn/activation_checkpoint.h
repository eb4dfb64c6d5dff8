// Activation checkpointing: run a function of one tensor without keeping its
// intermediates for backward; the backward runs it again (with the autocast state of the
// forward) and back-propagates through the fresh graph. Parameters used inside receive
// their gradients as usual (accumulated into .grad). What a block costs in memory drops to
// its input; the price is one more forward of it.
#pragma once
#include <torch/types.h>

#include <functional>

namespace comba::nn {

using TensorFn = std::function<torch::Tensor(const torch::Tensor&)>;

// fn(input), recomputed in backward. `fn` must be deterministic (no dropout, no RNG) and
// is kept alive until the backward. Runs fn plainly when no gradient will be taken
// (grad mode off, or input not requiring grad). No double backward.
torch::Tensor activation_checkpoint(const TensorFn& fn, const torch::Tensor& input);

}  // namespace comba::nn
