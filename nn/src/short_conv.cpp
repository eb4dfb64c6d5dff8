// ShortConvolution: the module, the checked functional form and its two paths.
//   - CUDA: fused kernels on channels-last [B, T, C] (nn/cuda/short_conv, through the
//     autograd Function in nn/src/launch/functions.h).
//   - ATen (CPU, fp64, kernel sizes > 4): one valid (unpadded) conv1d over the input with
//     each sequence's K - 1 previous inputs (the carried state, or zeros) placed in front
//     of it. Packed sequences each get their own K - 1 slots, so no window reaches into
//     the previous sequence, and the final state is read from the same extended buffer.
#include "comba/nn/short_conv.h"

#include "comba/core/checks.h"

#include <torch/nn/init.h>
#include <torch/nn/functional/conv.h>
#include <torch/torch.h>

#include <cmath>

#ifdef COMBA_WITH_CUDA
#include "launch/functions.h"
#include "launch/launchers.h"
#endif

namespace comba::nn {

ShortConvolutionImpl::ShortConvolutionImpl(const ShortConvolutionOptions& options_)
    : options(options_) {
  reset();
}

void ShortConvolutionImpl::reset() {
  TORCH_CHECK(options.channels() > 0, "ShortConvolution: option `channels` expected > 0, got ",
              options.channels());
  TORCH_CHECK(options.kernel_size() > 0, "ShortConvolution: option `kernel_size` expected > 0, got ",
              options.kernel_size());
  weight = register_parameter("weight", torch::empty({options.channels(), 1, options.kernel_size()}));
  if (options.bias()) bias = register_parameter("bias", torch::empty({options.channels()}));
  reset_parameters();
}

void ShortConvolutionImpl::reset_parameters() {
  // nn.Conv1d's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = kernel_size.
  torch::NoGradGuard no_grad;
  const double bound = 1.0 / std::sqrt(static_cast<double>(options.kernel_size()));
  weight.uniform_(-bound, bound);
  if (bias.defined()) bias.uniform_(-bound, bound);
}

ShortConvOutput ShortConvolutionImpl::forward(const torch::Tensor& x, const torch::Tensor& initial_state,
                                              const torch::Tensor& cu_seqlens) {
  return short_convolution(x, weight, bias, initial_state, cu_seqlens, options.silu());
}

namespace {

void check_cu_seqlens(const core::ArgChecker& check, const torch::Tensor& cu, int64_t batch, int64_t seq_len) {
  check.rank(cu, "cu_seqlens", 1, "[N + 1]");
  check.dtype_in(cu, "cu_seqlens", {at::kLong});
  check.require(batch == 1, "argument `cu_seqlens` requires B = 1 (packed sequences), got B = ", batch);
  check.require(cu.size(0) >= 2, "argument `cu_seqlens` expected at least 2 entries, got ", cu.size(0));
  // The kernels trust the boundaries, so they are checked here (a host copy, like the operator).
  const auto host = cu.to(at::kCPU).contiguous();
  const auto* b = host.data_ptr<int64_t>();
  const int64_t n = host.numel();
  check.require(b[0] == 0, "argument `cu_seqlens` must start at 0, got ", b[0]);
  for (int64_t i = 1; i < n; ++i) {
    check.require(b[i] >= b[i - 1], "argument `cu_seqlens` must be non-decreasing, got cu_seqlens[", i - 1,
                  "] = ", b[i - 1], " > cu_seqlens[", i, "] = ", b[i]);
  }
  check.require(b[n - 1] == seq_len, "argument `cu_seqlens` must end at T = ", seq_len, ", got ", b[n - 1]);
}

}  // namespace

ShortConvOutput short_convolution(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                  const torch::Tensor& initial_state, const torch::Tensor& cu_seqlens, bool silu) {
  const core::ArgChecker check("short_convolution");
  check.rank(x, "x", 3, "[B, T, C]").floating(x, "x");
  check.rank(weight, "weight", 3, "[C, 1, K]").floating(weight, "weight");
  check.require(weight.size(1) == 1 && weight.size(2) >= 1, "argument `weight` expected [C, 1, K] with K >= 1, got shape ",
                weight.sizes());
  const int64_t batch = x.size(0), seq_len = x.size(1), channels = x.size(2), taps = weight.size(2);
  check.require(channels == weight.size(0), "argument `x` expected C = ", weight.size(0),
                " channels (weight [C, 1, K]) [B, T, C], got shape ", x.sizes());
  check.device(weight, "weight", x.device(), "x");
  if (bias.defined()) {
    check.shape(bias, "bias", {channels}, "[C]").floating(bias, "bias").device(bias, "bias", x.device(), "x");
  }
  int64_t num_seqs = batch;
  if (cu_seqlens.defined()) {
    check_cu_seqlens(check, cu_seqlens, batch, seq_len);
    num_seqs = cu_seqlens.size(0) - 1;
  }
  if (initial_state.defined()) {
    check.shape(initial_state, "initial_state", {num_seqs, channels, taps - 1}, "[N, C, K - 1]")
        .floating(initial_state, "initial_state")
        .device(initial_state, "initial_state", x.device(), "x");
  }
#ifdef COMBA_WITH_CUDA
  if (seq_len > 0 && detail::cuda::short_conv_supported(x, taps)) {
    const auto opt = [](const torch::Tensor& t) {
      return t.defined() ? detail::cuda::OptTensor(t) : detail::cuda::OptTensor();
    };
    const auto out = detail::cuda::ShortConvFunction::apply(x, weight, opt(bias), opt(initial_state),
                                                            opt(cu_seqlens), silu);
    return {out[0], out[1]};
  }
#endif
  return short_convolution_aten(x, weight, bias, initial_state, cu_seqlens, silu);
}

ShortConvOutput short_convolution_aten(const torch::Tensor& x, const torch::Tensor& weight,
                                       const torch::Tensor& bias, const torch::Tensor& initial_state,
                                       const torch::Tensor& cu_seqlens, bool silu) {
  const int64_t batch = x.size(0), seq_len = x.size(1), channels = x.size(2);
  const int64_t width = weight.size(2) - 1;  // inputs carried between calls
  const bool varlen = cu_seqlens.defined();
  const auto cu = varlen ? cu_seqlens.to(x.device()) : torch::Tensor();
  const int64_t num_seqs = varlen ? cu.size(0) - 1 : batch;
  const auto prefix = initial_state.defined()
                          ? initial_state.to(x.scalar_type()).transpose(1, 2)  // [N, K-1, C]
                          : torch::zeros({num_seqs, width, channels}, x.options());

  if (seq_len == 0) {  // nothing to convolve; the carried inputs stay as they were
    return {x.new_empty({batch, 0, channels}), prefix.transpose(1, 2).contiguous()};
  }

  torch::Tensor extended;  // [B, T + K - 1, C] dense, or [1, T + N (K - 1), C] packed
  torch::Tensor token_slots, final_slots;
  if (!varlen) {
    extended = torch::cat({prefix, x}, 1);
  } else {
    const auto long_opts = cu.options();
    const auto seq_ids = torch::arange(num_seqs, long_opts);
    const auto lengths = cu.slice(0, 1) - cu.slice(0, 0, num_seqs);
    const auto token_seq = torch::repeat_interleave(seq_ids, lengths, /*dim=*/0, /*output_size=*/seq_len);
    // Sequence i's tokens shift right by (i + 1) (K - 1); its slots sit just before them.
    token_slots = torch::arange(seq_len, long_opts) + (token_seq + 1) * width;
    const auto lane = torch::arange(width, long_opts);
    const auto prefix_slots = (cu.slice(0, 0, num_seqs) + seq_ids * width).unsqueeze(1) + lane;  // [N, K-1]
    final_slots = (cu.slice(0, 1) + (seq_ids + 1) * width).unsqueeze(1) - width + lane;         // [N, K-1]
    const int64_t ext_len = seq_len + num_seqs * width;
    auto source_row = torch::empty({ext_len}, long_opts);
    source_row.index_put_({token_slots}, torch::arange(seq_len, long_opts));
    source_row.index_put_({prefix_slots.reshape(-1)}, seq_len + torch::arange(num_seqs * width, long_opts));
    const auto source = torch::cat({x[0], prefix.reshape({num_seqs * width, channels})}, 0);
    extended = source.index_select(0, source_row).unsqueeze(0);
  }

  auto y = torch::conv1d(extended.transpose(1, 2), weight.to(x.scalar_type()),
                         bias.defined() ? bias.to(x.scalar_type()) : torch::Tensor(),
                         /*stride=*/at::IntArrayRef{1}, /*padding=*/at::IntArrayRef{0},
                         /*dilation=*/at::IntArrayRef{1}, /*groups=*/channels);  // [B, C, L - K + 1]
  ShortConvOutput out;
  if (!varlen) {
    out.output = y.transpose(1, 2);
    out.final_state = extended.slice(1, seq_len, seq_len + width).transpose(1, 2);
  } else {
    // The window ending at extended position e is conv output e - (K - 1).
    out.output = y.index_select(2, token_slots - width).transpose(1, 2);
    out.final_state = extended[0].index_select(0, final_slots.reshape(-1))
                          .view({num_seqs, width, channels}).transpose(1, 2);
  }
  if (silu) out.output = torch::silu(out.output);
  out.output = out.output.contiguous();
  out.final_state = out.final_state.contiguous();
  return out;
}

}  // namespace comba::nn
