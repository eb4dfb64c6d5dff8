// DecodeGraph: warm-up, capture on a side stream (graphs cannot capture the legacy default
// stream), then replay on the caller's stream.
#include "decode_graph.h"

#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime.h>
#include <torch/torch.h>

#include <exception>

#include <vector>

namespace comba::nn::detail {

namespace {

// Every tensor handle of the cache, in a fixed order.
std::vector<torch::Tensor> cache_tensors(const CombaCache& cache) {
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < cache.num_layers(); ++i) {
    const auto& s = cache.layer(i);
    for (const auto* t : {&s.conv_q, &s.conv_k, &s.conv_v, &s.recurrent, &s.key, &s.value, &s.key_valid,
                          &s.positions}) {
      out.push_back(*t);
    }
  }
  return out;
}

void restore_cache_tensors(CombaCache& cache, const std::vector<torch::Tensor>& saved) {
  size_t at = 0;
  for (int64_t i = 0; i < cache.num_layers(); ++i) {
    auto& s = cache.layer(i);
    for (auto* t : {&s.conv_q, &s.conv_k, &s.conv_v, &s.recurrent, &s.key, &s.value, &s.key_valid,
                    &s.positions}) {
      *t = saved[at++];
    }
  }
}

bool same_storage(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].defined() != b[i].defined()) return false;
    if (a[i].defined() && (a[i].data_ptr() != b[i].data_ptr() || a[i].sizes() != b[i].sizes())) return false;
  }
  return true;
}

}  // namespace

DecodeGraph::DecodeGraph(CombaForCausalLM& model, CombaCache& cache) : model_(model), cache_(cache) {}

torch::Tensor DecodeGraph::eager(const torch::Tensor& ids) {
  return model_->forward(ids, LMInputs().cache(&cache_)).logits.select(1, -1);
}

bool DecodeGraph::capture(const torch::Tensor& ids) {
  const c10::cuda::CUDAGuard device_guard(ids.device());
  ids_ = ids.clone();
  const auto before = cache_tensors(cache_);
  const int64_t seen_before = cache_.seen_tokens();
  // Capturing runs no kernel, but the forward counts the step's tokens: undo that.
  const auto restore_seen = [&] { cache_.add_seen_tokens(seen_before - cache_.seen_tokens()); };
  auto graph = std::make_unique<at::cuda::CUDAGraph>();
  const auto caller = at::cuda::getCurrentCUDAStream();
  const auto side = at::cuda::getStreamFromPool();
  at::cuda::CUDAEvent ready;
  ready.record(caller);
  ready.block(side);
  {
    const c10::cuda::CUDAStreamGuard stream_guard(side);
    // cuBLAS takes a workspace per stream on first use: take it outside the capture.
    at::cuda::getCurrentCUDABlasHandle();
    try {
      graph->capture_begin();
      logits_ = eager(ids_);
      graph->capture_end();
    } catch (const std::exception& e) {
      // Something in the step cannot be captured (a host synchronisation, say): end the
      // capture (the graph's own end first: it also ends the allocator's capture pool; then
      // the stream's, if that failed before), clear the error it left, decode eagerly.
      try {
        graph->capture_end();
      } catch (const std::exception&) {  // expected: the capture was invalidated
      }
      cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
      if (cudaStreamIsCapturing(side.stream(), &status) == cudaSuccess && status != cudaStreamCaptureStatusNone) {
        cudaGraph_t broken = nullptr;
        if (cudaStreamEndCapture(side.stream(), &broken) == cudaSuccess && broken != nullptr) cudaGraphDestroy(broken);
      }
      (void)cudaGetLastError();
      TORCH_WARN("generate: the decode step could not be captured in a CUDA graph (", e.what(),
                 "); decoding eagerly");
      restore_cache_tensors(cache_, before);
      restore_seen();
      logits_ = torch::Tensor();
      return false;
    }
  }
  at::cuda::CUDAEvent captured;
  captured.record(side);
  captured.block(caller);
  restore_seen();
  if (!same_storage(before, cache_tensors(cache_))) {
    TORCH_WARN("generate: a decode step moved the cache to new storage, so it cannot be replayed from a CUDA "
               "graph; decoding eagerly");
    restore_cache_tensors(cache_, before);
    logits_ = torch::Tensor();
    return false;
  }
  graph_ = std::move(graph);
  return true;
}

torch::Tensor DecodeGraph::step(const torch::Tensor& ids) {
  const int64_t call = calls_++;
  if (eager_only_ || call == 0) return eager(ids);
  if (!graph_ && !capture(ids)) {
    eager_only_ = true;
    return eager(ids);
  }
  ids_.copy_(ids);
  graph_->replay();
  cache_.add_seen_tokens(ids.size(1));
  return logits_;
}

}  // namespace comba::nn::detail
