// Arguments of the fused recurrent kernels, filled once by the host launcher
// (ops/src/cuda/recurrent_launch.cpp). Plain data: no torch, shared by host and device.
#pragma once
#include <cstdint>

namespace comba::cuda {

enum class ElementType { kFloat32, kFloat16, kBFloat16 };

struct RecurrentFwdParams {
  // Inputs, contiguous in the caller's layout: q, k, p [B, T, H, K]; v [B, T, HV, V];
  // g, beta [B, T, HV] (input dtype or float32, see *_fp32); beta may be null (= 1).
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
  void* o = nullptr;                     // [B, T, HV, V], input dtype
  float* final_state = nullptr;          // [N, HV, K, V] or null

  ElementType dtype = ElementType::kFloat32;
  int64_t seq_len = 0;  // T
  int heads = 0, value_heads = 0, key_dim = 0, value_dim = 0, num_seqs = 0;
  float scale = 1.f;
  bool use_l2norm = false;
};

// Launches the forward on `stream` (a cudaStream_t); returns the launch's cudaError_t.
int launch_recurrent_fwd(const RecurrentFwdParams& params, void* stream);

// Largest key head dim the recurrent kernels take.
inline constexpr int kRecurrentMaxKeyDim = 256;

}  // namespace comba::cuda
