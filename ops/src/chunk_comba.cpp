// The chunk form below autograd, as the algorithm's list of stages (chunk_stages.h) on the
// CUDA kernels; the fused recurrent kernels or the ATen reference path where those do not
// take the problem (backend.h).
#include "backend.h"
#include "chunk_stages.h"
#include "functions.h"
#include "reference/chunk_ref.h"
#include "reference/reference_path.h"

namespace comba::detail {

#ifdef COMBA_WITH_CUDA
namespace {

// A training forward's workspace as CombaForward::saved carries it through autograd, and
// back: all of it (KeptWorkspace::kAll, kSavedTensors) or the states alone with the chunk
// numbering (kStates, kSavedStates), so that the backward's prep neither reads cu_seqlens
// back nor plans the walks again. Tu is not kept: only the forward scan reads it, and
// dropping it here frees it before the backward. Both lists end with the chunk numbering:
// the chunk offsets, the scans' walks and the first launch's walk count (a CPU scalar).
constexpr size_t kNumbering = 3;
constexpr size_t kSavedTensors = 8 + kNumbering;
constexpr size_t kSavedStates = 1 + kNumbering;
std::vector<at::Tensor> with_numbering(std::vector<at::Tensor> saved, ChunkWorkspace& ws) {
  saved.push_back(std::move(ws.chunk_offsets));
  saved.push_back(std::move(ws.scan_plan));
  saved.push_back(at::scalar_tensor(ws.scan_short_walks, at::kLong));
  return saved;
}
void take_numbering(std::vector<at::Tensor>& saved, ChunkWorkspace& ws) {
  const size_t first = saved.size() - kNumbering;
  ws.chunk_offsets = std::move(saved[first]);
  ws.scan_plan = std::move(saved[first + 1]);
  ws.scan_short_walks = saved[first + 2].item<int64_t>();
}

std::vector<at::Tensor> to_saved(ChunkWorkspace ws) {
  return with_numbering({std::move(ws.w), std::move(ws.mqk), std::move(ws.qf), std::move(ws.kf),
                         std::move(ws.gamma), std::move(ws.t_inv), std::move(ws.states), std::move(ws.v_new)},
                        ws);
}
std::vector<at::Tensor> to_saved_states(ChunkWorkspace ws) { return with_numbering({std::move(ws.states)}, ws); }

// The numbering kept with the states (the states stay in saved[0], for after the prep).
ChunkWorkspace numbering_from_saved_states(std::vector<at::Tensor>& saved) {
  ChunkWorkspace ws;
  ws.num_chunks = saved[0].size(0);
  take_numbering(saved, ws);
  return ws;
}

// Takes the buffers over: the backward owns them alone, so that releasing frees them.
ChunkWorkspace from_saved(std::vector<at::Tensor> saved) {
  ChunkWorkspace ws;
  take_numbering(saved, ws);
  ws.w = std::move(saved[0]);
  ws.mqk = std::move(saved[1]);
  ws.qf = std::move(saved[2]);
  ws.kf = std::move(saved[3]);
  ws.gamma = std::move(saved[4]);
  ws.t_inv = std::move(saved[5]);
  ws.states = std::move(saved[6]);
  ws.v_new = std::move(saved[7]);
  ws.num_chunks = ws.t_inv.size(0);
  ws.padded_key_dim = ws.states.size(2);
  return ws;
}

}  // namespace
#endif

CombaForward chunk_comba_fwd(const CombaProblem& pb, const CombaInputs& in, KeptWorkspace keep) {
  const auto backend = select_backend(pb, in, /*chunk_form=*/true);
#ifdef COMBA_WITH_CUDA
  if (backend == Backend::kChunkKernels) {
    const auto kin = cuda::kernel_ready(in);  // laid out once for both stages
    auto ws = cuda::chunk_prep(pb, kin);
    auto out = cuda::chunk_scan_fwd(pb, kin, ws, keep);
    if (keep == KeptWorkspace::kAll) out.saved = to_saved(std::move(ws));
    if (keep == KeptWorkspace::kStates) out.saved = to_saved_states(std::move(ws));
    return out;
  }
  if (backend == Backend::kRecurrentKernels) {
    return cuda::recurrent_fwd(pb, in, /*for_backward=*/keep != KeptWorkspace::kNone);
  }
#endif
  (void)backend;
  (void)keep;  // the reference path keeps nothing
  return reference_forward(pb, in, kChunkSize, chunk_fwd_ref);
}

InputGrads chunk_comba_bwd(const CombaProblem& pb, const CombaInputs& in,
                           const at::Tensor& grad_o, const at::Tensor& grad_final,
                           std::vector<at::Tensor> saved) {
  const auto backend = select_backend(pb, in, /*chunk_form=*/true);
#ifdef COMBA_WITH_CUDA
  if (backend == Backend::kChunkKernels) {
    const auto kin = cuda::kernel_ready(in);  // laid out once for every stage
    ChunkWorkspace ws;
    if (saved.size() == kSavedTensors) {
      ws = from_saved(std::move(saved));
    } else if (saved.size() == kSavedStates) {
      // The forward kept the states alone: the prep again (on the forward's numbering),
      // then V' from the states (every chunk at once; only the forward scan needed Tu, and
      // now V').
      ws = cuda::chunk_prep(pb, kin, numbering_from_saved_states(saved));
      ws.states = std::move(saved[0]);
      cuda::chunk_v_new(pb, kin, ws);
      ws.tu.reset();
    } else {
      // Not after a training forward (no workspace saved): run one now.
      ws = from_saved(chunk_comba_fwd(pb, kin, KeptWorkspace::kAll).saved);
    }
    const auto state_grads = cuda::chunk_scan_bwd(pb, kin, ws, grad_o, grad_final);
    // Nothing reads W, Mqk, the row factors and the decays again: the gradients' outputs
    // can reuse their memory (the caching allocator reuses it in this stream's order).
    ws.release_scan_operands();
    const auto grads = cuda::chunk_grads(pb, kin, ws, state_grads, grad_o);
    return finish_chunk_grads(pb, kin, grads);
  }
  if (backend == Backend::kRecurrentKernels) {
    return cuda::recurrent_bwd(pb, in, grad_o, grad_final, std::move(saved));
  }
#endif
  (void)backend;
  return reference_backward(pb, in, kChunkSize, grad_o, grad_final, chunk_bwd_ref);
}

}  // namespace comba::detail
