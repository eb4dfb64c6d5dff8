// The operator's forward and backward entry points below autograd, one pair per form.
// Each dispatches on the device: the CUDA kernels where they exist for the problem,
// else (or with CombaOptions::use_reference_path) the ATen reference path (any device,
// any float dtype). On CUDA the chunked form runs the tensor-core chunk kernels for
// 16-bit inputs with K <= 256 (K, V multiples of 8), and the exact fused recurrent kernels
// otherwise.
#pragma once
#include "layout.h"
#include "reference/reference_path.h"

namespace comba::detail {

// for_backward: also return in CombaForward::saved what the backward can reuse, and the
// backward takes it back, by value so that it can free each buffer once its kernels are
// done with it (empty: recompute).
CombaForward chunk_comba_fwd(const CombaProblem& pb, const CombaInputs& in,
                             bool for_backward = false);
InputGrads chunk_comba_bwd(const CombaProblem& pb, const CombaInputs& in,
                           const at::Tensor& grad_o, const at::Tensor& grad_final,
                           std::vector<at::Tensor> saved = {});

CombaForward fused_recurrent_comba_fwd(const CombaProblem& pb, const CombaInputs& in,
                                       bool for_backward = false);
InputGrads fused_recurrent_comba_bwd(const CombaProblem& pb, const CombaInputs& in,
                                     const at::Tensor& grad_o, const at::Tensor& grad_final,
                                     std::vector<at::Tensor> saved = {});

}  // namespace comba::detail
