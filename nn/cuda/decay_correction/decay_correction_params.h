// Arguments of the Comba inner-decay / output-correction kernels, filled once by the host
// launcher (nn/src/launch/decay_correction_cuda.cpp). Plain data: no torch, shared by host
// and device.
//
// Over q, k [rows, heads, dim] (rows = B * T), with s = sigmoid(decay[h]) (SPEC section 3):
//   p = round(k s),  q' = round(q - D[h] p)          (p rounded first, as the layer rounds it)
// fp32 math, outputs in the inputs' element type. Backward, from dq' and dp:
//   e = dp - D[h] dq',  dk = e s,  (dq = dq', no kernel)
//   dD[h] = -sum dq' p,  ddecay[h] = s (1 - s) sum e k   (sums over rows and dim, fp32)
#pragma once
#include <cstdint>

#include "comba/core/element_type.h"

namespace comba::nn::cuda {

struct DecayCorrectionParams {
  const void* q = nullptr;        // [rows, heads, dim] contiguous, element type `dtype`
  const void* k = nullptr;        // [rows, heads, dim] contiguous, `dtype`
  const float* decay = nullptr;   // [heads] fp32 (before the sigmoid)
  const float* D = nullptr;       // [heads] fp32
  void* q_out = nullptr;          // [rows, heads, dim], `dtype` (forward)
  void* p_out = nullptr;          // [rows, heads, dim], `dtype` (forward)

  const void* dq = nullptr;    // [rows, heads, dim] `dtype`: gradient of q', or null (= zero)
  const void* dp = nullptr;    // [rows, heads, dim] `dtype`: gradient of p, or null (= zero)
  void* dk = nullptr;          // [rows, heads, dim] `dtype`
  float* partial = nullptr;    // [decay_correction_bwd_blocks(...), 2 * heads]
  float* d_params = nullptr;   // [2 * heads]: dD then ddecay (partial summed in a fixed order)

  int64_t rows = 0;
  int heads = 0;
  int dim = 0;
  core::ElementType dtype = core::ElementType::kFloat32;
};

// Launch on `stream` (a cudaStream_t); return the launch's cudaError_t (0 = success).
// `vectorized`: 16-byte accesses (dim divisible by 16 / element size, aligned pointers);
// otherwise one element per access. The backward needs heads * dim / vector width <=
// DecayCorrectionTraits::kMaxSlots.
int launch_decay_correction_fwd(const DecayCorrectionParams& params, bool vectorized, void* stream);
int launch_decay_correction_bwd(const DecayCorrectionParams& params, bool vectorized, void* stream);

}  // namespace comba::nn::cuda
