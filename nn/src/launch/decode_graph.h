// generate's CUDA-graph decode step: the model's forward of one token per sequence with the
// decode cache, captured once into a CUDA graph and replayed for every later token (a
// decode step is dozens of small kernels whose launches, not their work, set the time at
// small batch). It relies on every Comba layer updating its cache in place during a
// decode step (CombaLayer: comba_decode_step_ and the conv states' copy_), so the graph's
// reads and writes of the cache hit the same storage on every replay. CUDA builds only.
#pragma once
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAStream.h>

#include "comba/nn/causal_lm.h"

#include <memory>

namespace comba::nn::detail {

class DecodeGraph {
 public:
  // model and cache must outlive the graph; the cache must hold every layer's state
  // already (after a prefill) in the layout of a decode step.
  DecodeGraph(CombaForCausalLM& model, CombaCache& cache);

  // Logits [B, vocab] of the next position after ids [B, 1] (int64, on the model's device),
  // advancing the cache. The first call runs eagerly (the warm-up: lazy initialisation,
  // states made dense); the second captures the step, then it and every later call replay
  // it. The result is the graph's output buffer: valid until the next call. If the step
  // cannot be captured, or capturing left a cache tensor at a new address (a layer that did
  // not update in place), it warns and every call runs eagerly.
  torch::Tensor step(const torch::Tensor& ids);

  bool captured() const { return graph_ != nullptr; }

 private:
  torch::Tensor eager(const torch::Tensor& ids);
  bool capture(const torch::Tensor& ids);

  CombaForCausalLM& model_;
  CombaCache& cache_;
  int64_t calls_ = 0;
  bool eager_only_ = false;
  std::unique_ptr<at::cuda::CUDAGraph> graph_;
  torch::Tensor ids_;     // [B, 1] the graph's input
  torch::Tensor logits_;  // [B, vocab] its output
};

}  // namespace comba::nn::detail
