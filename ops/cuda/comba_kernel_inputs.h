// The operator's inputs and sizes as every kernel family reads them: the chunk and the
// recurrent parameters (ChunkParams, RecurrentFwdParams) both start with this struct, and
// the host launchers fill it in one place (KernelInputs::bind, bind_sizes). Plain data: no
// torch, shared by host and device.
#pragma once
#include <cstdint>

#include "comba/core/element_type.h"

namespace comba::cuda {

struct CombaKernelInputs {
  // Contiguous, in the caller's layout: q, k, p [B, T, H, K]; v [B, T, HV, V]; g, beta
  // [B, T, HV] (input dtype or float32, see *_fp32); beta may be null (= 1).
  const void* q = nullptr;
  const void* k = nullptr;
  const void* p = nullptr;
  const void* v = nullptr;
  const void* g = nullptr;
  const void* beta = nullptr;
  bool g_fp32 = false;
  bool beta_fp32 = false;
  const float* initial_state = nullptr;  // [N, HV, K, V] or null (zeros)
  const int64_t* cu_seqlens = nullptr;   // [N + 1] on the device, or null (dense)

  core::ElementType dtype = core::ElementType::kFloat32;  // of q, k, p, v (every launcher sets it)
  int64_t seq_len = 0;  // T (dense: tokens per sequence)
  int heads = 0, value_heads = 0, key_dim = 0, value_dim = 0, num_seqs = 0;
  float scale = 1.f;
  bool use_l2norm = false;
};

}  // namespace comba::cuda
