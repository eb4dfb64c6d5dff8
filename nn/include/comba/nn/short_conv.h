// ShortConvolution: causal depthwise 1-D convolution (kernel conv_size, default 4) followed
// by SiLU, as fla's ShortConvolution. Weight [C, 1, K] like a depthwise nn.Conv1d, so that
// checkpoint tensors load unchanged. Supports a carried state (the last K - 1 inputs per
// sequence) for step-by-step decoding, and packed sequences (cu_seqlens) that never see
// each other.
//
// On CUDA (float32/float16/bfloat16, kernel size <= 4) a fused kernel pair does the work
// directly on channels-last [B, T, C] with fp32 accumulation (nn/cuda/short_conv); the
// CPU and everything else take the ATen composition (short_convolution_aten).
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

// The module's computation as a function: y = act(causal depthwise conv(x) + bias).
// x [B, T, C]; weight [C, 1, K]; bias [C] or undefined; initial_state [N, C, K - 1] or
// undefined (zeros); cu_seqlens int64 [N + 1] (B must be 1) or undefined (N = B).
// Checks every argument (errors name it), then dispatches: fused CUDA kernels where they
// apply, else short_convolution_aten. Differentiable in x, weight, bias, initial_state.
ShortConvOutput short_convolution(const torch::Tensor& x, const torch::Tensor& weight,
                                  const torch::Tensor& bias = {}, const torch::Tensor& initial_state = {},
                                  const torch::Tensor& cu_seqlens = {}, bool silu = true);

// The same computation composed of ATen ops (conv1d over the input with each sequence's
// carried inputs in front): the CPU path, and the twin the CUDA kernels are checked and
// timed against. Expects arguments that short_convolution accepts.
ShortConvOutput short_convolution_aten(const torch::Tensor& x, const torch::Tensor& weight,
                                       const torch::Tensor& bias = {}, const torch::Tensor& initial_state = {},
                                       const torch::Tensor& cu_seqlens = {}, bool silu = true);

}  // namespace comba::nn
