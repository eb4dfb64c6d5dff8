// Arguments of the chunked kernels, filled once by the host launcher
// (ops/src/launch/chunk_stages_cuda.cpp). Plain data: no torch, shared by host and device.
//
// Chunks: every sequence is cut into chunks of kChunk tokens (the last may be short);
// chunks are numbered globally, sequence by sequence. Workspace tensors are indexed
// [chunk][value head][...] and hold full 64-row tiles (rows past a short chunk's end are
// zero). "OT" below is the 16-bit input dtype; KP is the key dim rounded up to a tile.
#pragma once
#include <cstdint>

#include "../comba_kernel_inputs.h"
#include "chunk_traits.h"

namespace comba::cuda {

// The inputs and sizes (CombaKernelInputs: dtype bf16 or fp16), then the chunking and the
// per-chunk workspace.
struct ChunkParams : CombaKernelInputs {
  const int* chunk_offsets = nullptr;  // [N + 1] first global chunk of each sequence (varlen)
  int64_t num_chunks = 0;              // all sequences
  // The scans' walks (ChunkTraits::plan_scans): CTA z of a launch walks the sequences
  // scan_seqs[scan_walks[z], scan_walks[z + 1]) in turn, for scan_count walks; null: CTA z
  // walks sequence z, for all N.
  const int* scan_seqs = nullptr;
  const int* scan_walks = nullptr;
  int scan_count = 0;
  int64_t scan_walk_count() const { return scan_walks != nullptr ? scan_count : num_seqs; }  // host

  // Per-chunk workspace written by the prep kernel (OT). W, Tu and Mqk rows are padded to
  // workspace_ld(columns) (the padding is never read):
  void* w = nullptr;     // [NC, HV, 64, KP]  T diag(beta e^G0) P^
  void* tu = nullptr;    // [NC, HV, 64, 64]  T diag(beta) (U = Tu V is formed in the scan)
  void* mqk = nullptr;   // [NC, HV, 64, 64]  scale (Q^ K^T)_ij e^(G_i - G_j), j <= i
  float* qf = nullptr;   // [NC, HV, 64]  row factors: Qs = diag(qf) Q = scale e^G Q^
  float* kf = nullptr;   // [NC, HV, 64]  Kd = diag(kf) K = e^(G_last - G) K^
  float* gamma = nullptr;  // [NC, HV]        e^G_last
  void* t_inv = nullptr;   // [NC, HV, 64, 64]  T = (I + A)^-1 (for the gradients)

  // Forward scan outputs.
  void* o = nullptr;             // [B, T, HV, V] input dtype, or null
  float* final_state = nullptr;  // [N, HV, K, V] or null
  void* states = nullptr;        // [NC, HV, KP, V] OT: state entering each chunk, or null
  void* v_new = nullptr;         // [NC, HV, 64, V] OT: U - W S (written by the scan or the V' kernel), or null

  // Backward.
  const void* grad_o = nullptr;       // [B, T, HV, V] input dtype
  const float* grad_final = nullptr;  // [N, HV, K, V] or null
  void* d_states = nullptr;           // [NC, HV, KP, V] OT: gradient of each chunk's end state
  void* dv_new = nullptr;             // [NC, HV, 64, V] OT: gradient of U - W S
  float* grad_initial = nullptr;      // [N, HV, K, V] or null
  // Gradients of q, k, p: [B, T, HV, K] float32 when value heads share a query head
  // (summed over the group afterwards) or the key tile is split (chunk_key_split), else
  // [B, T, H, K] in the input dtype (dqkp_fp32).
  void* dq = nullptr;
  void* dk = nullptr;
  void* dp = nullptr;
  bool dqkp_fp32 = false;
  void* dv = nullptr;       // [B, T, HV, V] input dtype
  float* dg = nullptr;      // [B, T, HV]
  float* dbeta = nullptr;   // [B, T, HV]
};

// Each returns the launch's cudaError_t (as int); stream is a cudaStream_t.
int launch_chunk_prep(const ChunkParams& params, void* stream);
int launch_chunk_scan_fwd(const ChunkParams& params, void* stream);
int launch_chunk_v_new(const ChunkParams& params, void* stream);
int launch_chunk_scan_bwd(const ChunkParams& params, void* stream);
int launch_chunk_grad(const ChunkParams& params, void* stream);

}  // namespace comba::cuda
