// The short-convolution kernels' per-thread code run on the CPU: every (channel vector,
// token run) of the CUDA grid in turn, the same functions the kernels call
// (nn/cuda/short_conv/short_conv_tile.cuh). Catches tiling and sequence-boundary mistakes
// on machines without a GPU. No torch here (the .cu is compiled by nvcc as host code).
#pragma once
#include "nn/cuda/short_conv/short_conv_params.h"

namespace comba::nn::testing {

// Same contract as launch_short_conv_fwd / launch_short_conv_bwd, with host pointers
// (dw_partial unused: the backward sums the runs' weight grads straight into dw_total).
void emulate_short_conv_fwd(const comba::nn::cuda::ShortConvParams& params, bool vectorized);
void emulate_short_conv_bwd(const comba::nn::cuda::ShortConvParams& params, bool vectorized);

}  // namespace comba::nn::testing
