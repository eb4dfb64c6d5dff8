// ShortConvolution: causal depthwise 1-D convolution (kernel conv_size, default 4) followed
// by SiLU, as fla's ShortConvolution. Weight [C, 1, K] like a depthwise nn.Conv1d, so that
// checkpoint tensors load unchanged. Supports a carried state (the last K - 1 inputs per
// sequence) for step-by-step decoding, and packed sequences (cu_seqlens) that never see
// each other.
#pragma once
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <utility>

namespace comba::nn {

struct ShortConvolutionOptions {
  ShortConvolutionOptions(int64_t channels, int64_t kernel_size = 4)
      : channels_(channels), kernel_size_(kernel_size) {}
  TORCH_ARG(int64_t, channels);
  TORCH_ARG(int64_t, kernel_size);
  TORCH_ARG(bool, bias) = false;
  TORCH_ARG(bool, silu) = true;  // fla's activation='silu'
};

struct ShortConvOutput {
  torch::Tensor output;      // [B, T, C]
  torch::Tensor final_state; // [N, C, K - 1]: the last K - 1 inputs of each sequence
};

class ShortConvolutionImpl : public torch::nn::Module {
 public:
  explicit ShortConvolutionImpl(const ShortConvolutionOptions& options);
  void reset();
  void reset_parameters();

  // x [B, T, C]. initial_state [N, C, K - 1] or undefined (zeros). cu_seqlens int64 [N + 1]
  // (B must be 1) or undefined (N = B).
  ShortConvOutput forward(const torch::Tensor& x, const torch::Tensor& initial_state = {},
                          const torch::Tensor& cu_seqlens = {});

  ShortConvolutionOptions options;
  torch::Tensor weight;  // [C, 1, K]
  torch::Tensor bias;    // [C] or undefined
};
TORCH_MODULE(ShortConvolution);

}  // namespace comba::nn
