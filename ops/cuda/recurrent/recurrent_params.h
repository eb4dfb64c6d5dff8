// Arguments of the fused recurrent kernels, filled once by the host launcher
// (ops/src/launch/recurrent_launch.cpp). Plain data: no torch, shared by host and device.
#pragma once
#include <cstdint>

#include "../comba_kernel_inputs.h"

#include "recurrent_traits.h"

namespace comba::cuda {

#if defined(__CUDACC__)
#define COMBA_HOST_DEVICE __host__ __device__
#else
#define COMBA_HOST_DEVICE
#endif

// Checkpoint slot of the state entering segment 0 of sequence n, which starts at token
// bos: floor(bos / kRecurrentSegment) + n. Sequences never share a slot, and no prefix
// sum over the lengths (a host sync for cu_seqlens) is needed.
COMBA_HOST_DEVICE inline int64_t recurrent_first_slot(int64_t bos, int64_t n) {
  return bos / kRecurrentSegment + n;
}

// Slots for `tokens` tokens in `num_seqs` sequences: an upper bound of every slot + 1.
inline int64_t recurrent_checkpoint_slots(int64_t tokens, int64_t num_seqs) {
  return tokens / kRecurrentSegment + num_seqs + 1;
}

// The inputs and sizes (CombaKernelInputs: dtype fp32, fp16 or bf16), then the outputs.
struct RecurrentFwdParams : CombaKernelInputs {
  void* o = nullptr;             // [B, T, HV, V], input dtype
  float* final_state = nullptr;  // [N, HV, K, V] or null
  // [recurrent_checkpoint_slots, HV, K, V] or null: the state entering each segment.
  float* checkpoints = nullptr;
};

// One decode step (T = 1, dense): the inputs (CombaKernelInputs::initial_state unused),
// the state read from state_in and written to state_out, fp32 or bf16 (math in fp32 either
// way). state_out may be state_in: each thread reads its own state entries before it
// writes them, so the update is safe in place (comba_decode_step_).
struct RecurrentDecodeParams : CombaKernelInputs {
  const void* state_in = nullptr;  // [N, HV, K, V] or null (zeros)
  void* state_out = nullptr;       // [N, HV, K, V] or null; may equal state_in
  bool state_bf16 = false;         // both state buffers bf16, else fp32
  void* o = nullptr;               // [N, 1, HV, V], input dtype
};

// The backward reads the forward's inputs and checkpoints. q, k and p gradients are
// with respect to the l2-normalised vectors, per value head and per block of state
// columns (fp32 partial sums the host adds up, with the l2norm backward and the GVA
// group sum); dg and dbeta are fp32 partials per column block as well.
struct RecurrentBwdParams {
  RecurrentFwdParams in;                // o and final_state unused
  const float* checkpoints = nullptr;   // from the training forward
  const void* grad_o = nullptr;         // [B, T, HV, V], input dtype
  const float* grad_final = nullptr;    // [N, HV, K, V] or null
  float* scratch = nullptr;             // per CTA: one segment's states
  float* dq = nullptr;                  // [CB, B, T, HV, K] with CB = gridDim.x
  float* dk = nullptr;
  float* dp = nullptr;
  float* dg = nullptr;                  // [CB, B, T, HV]
  float* dbeta = nullptr;
  void* dv = nullptr;                   // [B, T, HV, V], input dtype
  float* grad_initial = nullptr;        // [N, HV, K, V] or null
  int64_t tokens = 0;                   // B * T: the stride of one column block's partials
};

// Launch on `stream` (a cudaStream_t); return the launch's cudaError_t.
int launch_recurrent_fwd(const RecurrentFwdParams& params, void* stream);
int launch_recurrent_bwd(const RecurrentBwdParams& params, void* stream);
int launch_recurrent_decode(const RecurrentDecodeParams& params, void* stream);

// Backward tiling, for the host's buffer sizes: column blocks and scratch floats.
struct RecurrentBwdShape {
  int column_blocks;
  int64_t scratch_floats_per_cta;
};
RecurrentBwdShape recurrent_bwd_shape(int key_dim, int value_dim);

// Largest key head dim the recurrent kernels take.
inline constexpr int kRecurrentMaxKeyDim = 256;

}  // namespace comba::cuda
