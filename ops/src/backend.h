// Which implementation runs a call, chosen here for both forms and both directions (the
// backward must find the workspace its forward saved): the CUDA kernels where they take
// the problem, else, or with CombaOptions::use_reference_path, the ATen reference path
// (any device, any float dtype). On CUDA the chunked form runs the tensor-core chunk
// kernels for 16-bit inputs with K <= 256 (K, V multiples of 8), and the exact fused
// recurrent kernels otherwise.
#pragma once
#include "layout.h"
#ifdef COMBA_WITH_CUDA
#include "launch/chunk_stages_cuda.h"
#include "launch/recurrent_launch.h"
#endif

namespace comba::detail {

enum class Backend { kChunkKernels, kRecurrentKernels, kReference };

// chunk_form: whether the chunk kernels may take the call (chunk_comba) or only the
// recurrent ones (fused_recurrent_comba).
inline Backend select_backend(const CombaProblem& pb, const CombaInputs& in, bool chunk_form) {
#ifdef COMBA_WITH_CUDA
  if (!pb.reference_path) {
    if (chunk_form && cuda::chunk_supported(pb, in)) return Backend::kChunkKernels;
    if (cuda::recurrent_supported(pb, in)) return Backend::kRecurrentKernels;
  }
#else
  (void)pb, (void)in, (void)chunk_form;
#endif
  return Backend::kReference;
}

}  // namespace comba::detail
