// Host side of the chunked kernels: workspace, parameters, and the stage order
//   forward:  prep -> scan (o, final state; in training also S and V' per chunk)
//   backward: reverse scan (dS, dV', dS0) -> per-chunk grads, on the training forward's
//             workspace (a backward without one runs that forward first).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <vector>

#include "../../cuda/chunk/chunk_params.h"
#include "comba/core/cuda_launch.h"
#include "comba/ops/comba.h"
#include "kernel_inputs.h"
#include "launchers.h"

namespace comba::detail::cuda {

namespace {

namespace kc = comba::cuda;

// The kernels' chunk length is the host's: chunk counts, workspace shapes and the ATen
// reference all use kChunkSize.
static_assert(kc::kChunk == kChunkSize, "kernel chunk length (kChunk) != kChunkSize");

// Global chunk numbering: the first chunk of each packed sequence on the device
// (undefined when dense) and the number of chunks.
struct ChunkNumbering {
  at::Tensor chunk_offsets;
  int64_t num_chunks = 0;
};

// Reads cu_seqlens back to the host when packed; the backward reuses the forward's.
ChunkNumbering number_chunks(const CombaProblem& pb, const CombaInputs& in) {
  if (!pb.varlen) return {at::Tensor(), pb.num_seqs * ((pb.seq_len + kc::kChunk - 1) / kc::kChunk)};
  const auto cu_host = in.cu_seqlens.to(at::kCPU).contiguous();
  const auto* b = cu_host.data_ptr<int64_t>();
  std::vector<int> offsets(pb.num_seqs + 1, 0);
  for (int64_t i = 0; i < pb.num_seqs; ++i) {
    offsets[i + 1] = offsets[i] + static_cast<int>((b[i + 1] - b[i] + kc::kChunk - 1) / kc::kChunk);
  }
  return {at::tensor(offsets, at::TensorOptions().dtype(at::kInt)).to(in.q.device()), offsets.back()};
}

// The kernels' inputs and the chunk numbering.
struct Prepared {
  KernelInputs in;
  at::Tensor chunk_offsets;
  int64_t num_chunks = 0;
  int64_t kp = 0;
};

Prepared prepare(const CombaProblem& pb, const CombaInputs& in, ChunkNumbering numbering) {
  return {KernelInputs(in), std::move(numbering.chunk_offsets), numbering.num_chunks,
          kc::chunk_padded_key_dim(static_cast<int>(pb.key_dim))};
}

kc::ChunkParams base_params(const CombaProblem& pb, const Prepared& in) {
  kc::ChunkParams p;
  in.in.bind(p);
  bind_sizes(p, pb);
  p.chunk_offsets = in.chunk_offsets.defined() ? in.chunk_offsets.data_ptr<int>() : nullptr;
  p.num_chunks = in.num_chunks;
  return p;
}

// The prep kernel's per-chunk operands.
struct PrepWorkspace {
  at::Tensor w, tu, mqk, qf, kf, gamma, t_inv;
};

PrepWorkspace run_prep(const CombaProblem& pb, const Prepared& in, kc::ChunkParams& p,
                       cudaStream_t stream) {
  const auto opts = in.in.q.options();
  const int64_t nc = in.num_chunks, hv = pb.value_heads, c = kc::kChunk;
  PrepWorkspace ws;
  ws.w = at::empty({nc, hv, c, in.kp}, opts);
  ws.tu = at::empty({nc, hv, c, c}, opts);
  ws.mqk = at::empty({nc, hv, c, c}, opts);
  ws.qf = at::empty({nc, hv, c}, opts.dtype(at::kFloat));
  ws.kf = at::empty({nc, hv, c}, opts.dtype(at::kFloat));
  ws.gamma = at::empty({nc, hv}, opts.dtype(at::kFloat));
  ws.t_inv = at::empty({nc, hv, c, c}, opts);
  p.w = ws.w.data_ptr();
  p.tu = ws.tu.data_ptr();
  p.mqk = ws.mqk.data_ptr();
  p.qf = ws.qf.data_ptr<float>();
  p.kf = ws.kf.data_ptr<float>();
  p.gamma = ws.gamma.data_ptr<float>();
  p.t_inv = ws.t_inv.data_ptr();
  core::check_launch(kc::launch_chunk_prep(p, stream), "chunk_comba", "prep");
  return ws;
}

// What a training forward keeps for the backward (CombaForward::saved, in this order):
// the prep operands the reverse scan and the gradients read, the state entering each
// chunk, V', and the chunk numbering of varlen batches (undefined when dense).
struct SavedWorkspace {
  at::Tensor w, qf, kf, mqk, gamma, t_inv, states, v_new, chunk_offsets;

  std::vector<at::Tensor> to_list() const {
    return {w, qf, kf, mqk, gamma, t_inv, states, v_new, chunk_offsets};
  }
  static bool is_list(const std::vector<at::Tensor>& list) { return list.size() == 9; }
  static SavedWorkspace from_list(const std::vector<at::Tensor>& l) {
    return {l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7], l[8]};
  }
  ChunkNumbering numbering() const { return {chunk_offsets, w.size(0)}; }
  // After the reverse scan: the gradient kernel reads none of W, Mqk, the row factors and
  // the decays, so their memory can serve its outputs (the caching allocator reuses it in
  // this stream's order). The pointers left in the parameters are not read again.
  void release_scan_operands() {
    for (auto* t : {&w, &qf, &kf, &mqk, &gamma}) t->reset();
  }
  void bind(kc::ChunkParams& p) const {
    p.w = w.data_ptr();
    p.qf = qf.data_ptr<float>();
    p.kf = kf.data_ptr<float>();
    p.mqk = mqk.data_ptr();
    p.gamma = gamma.data_ptr<float>();
    p.t_inv = t_inv.data_ptr();
    p.states = states.data_ptr();
    p.v_new = v_new.data_ptr();
  }
};

}  // namespace

bool chunk_supported(const CombaProblem& pb, const CombaInputs& in) {
  // 16-byte tile loads: rows of q, k, p, v must be whole 16-byte vectors.
  return in.q.is_cuda() && (pb.dtype == at::kBFloat16 || pb.dtype == at::kHalf) &&
         pb.key_dim <= comba::cuda::kChunkMaxKeyDim && pb.key_dim % 8 == 0 &&
         pb.value_dim % 8 == 0;
}

CombaForward chunk_fwd(const CombaProblem& pb, const CombaInputs& in, bool for_backward) {
  const c10::cuda::CUDAGuard guard(in.q.device());
  const auto stream = at::cuda::getCurrentCUDAStream().stream();
  const Prepared prep = prepare(pb, in, number_chunks(pb, in));
  auto p = base_params(pb, prep);
  CombaForward out;
  out.o = at::empty({pb.batch, pb.seq_len, pb.value_heads, pb.value_dim}, prep.in.q.options());
  out.final_state = at::empty({pb.num_seqs, pb.value_heads, pb.key_dim, pb.value_dim},
                              prep.in.q.options().dtype(at::kFloat));
  const auto ws = run_prep(pb, prep, p, stream);
  p.o = out.o.data_ptr();
  p.final_state = out.final_state.data_ptr<float>();
  at::Tensor states, v_new;
  if (for_backward) {
    states = at::empty({prep.num_chunks, pb.value_heads, prep.kp, pb.value_dim}, prep.in.q.options());
    v_new = at::empty({prep.num_chunks, pb.value_heads, kc::kChunk, pb.value_dim}, prep.in.q.options());
    p.states = states.data_ptr();
    p.v_new = v_new.data_ptr();
  }
  core::check_launch(kc::launch_chunk_scan_fwd(p, stream), "chunk_comba", "scan (forward)");
  if (for_backward) {
    out.saved = SavedWorkspace{ws.w,     ws.qf,  ws.kf,  ws.mqk, ws.gamma,
                               ws.t_inv, states, v_new, prep.chunk_offsets}
                    .to_list();
  }
  return out;
}

InputGrads chunk_bwd(const CombaProblem& pb, const CombaInputs& in, const at::Tensor& grad_o,
                     const at::Tensor& grad_final, std::vector<at::Tensor> saved) {
  if (!SavedWorkspace::is_list(saved)) {  // not after a training forward: run one now
    return chunk_bwd(pb, in, grad_o, grad_final, chunk_fwd(pb, in, /*for_backward=*/true).saved);
  }
  const c10::cuda::CUDAGuard guard(in.q.device());
  const auto stream = at::cuda::getCurrentCUDAStream().stream();
  auto workspace = SavedWorkspace::from_list(saved);
  saved.clear();  // the workspace's buffers are owned here alone now
  const Prepared prep = prepare(pb, in, workspace.numbering());
  auto p = base_params(pb, prep);
  const auto opts = prep.in.q.options();
  const int64_t nc = prep.num_chunks, hv = pb.value_heads, c = kc::kChunk, V = pb.value_dim;
  workspace.bind(p);

  // Reverse scan: dS per chunk end, dV', and the initial state's gradient.
  const auto d_o = tile_ready(grad_o.to(pb.dtype));
  const auto d_final = grad_final.defined() ? grad_final.to(at::kFloat).contiguous() : at::Tensor();
  auto d_states = at::empty({nc, hv, prep.kp, V}, opts);
  auto dv_new = at::empty({nc, hv, c, V}, opts);
  auto d_initial = at::empty({pb.num_seqs, hv, pb.key_dim, V}, opts.dtype(at::kFloat));
  p.grad_o = d_o.data_ptr();
  p.grad_final = d_final.defined() ? d_final.data_ptr<float>() : nullptr;
  p.d_states = d_states.data_ptr();
  p.dv_new = dv_new.data_ptr();
  p.grad_initial = d_initial.data_ptr<float>();
  core::check_launch(kc::launch_chunk_scan_bwd(p, stream), "chunk_comba", "scan (backward)");
  workspace.release_scan_operands();

  // Per-chunk gradients. The q, k, p gradients come per value head in fp32 when a GVA
  // group shares a query head (summed here) or the key tile is split (the l2norm backward
  // is then applied here too), else per query head in the input dtype.
  const bool grouped = pb.group() > 1, split = kc::chunk_key_split(static_cast<int>(prep.kp));
  const bool per_value_head = grouped || split;
  const auto qk_shape = per_value_head ? std::vector<int64_t>{pb.batch, pb.seq_len, hv, pb.key_dim}
                                       : std::vector<int64_t>{pb.batch, pb.seq_len, pb.heads, pb.key_dim};
  const auto qk_opts = per_value_head ? opts.dtype(at::kFloat) : opts;
  auto dq = at::empty(qk_shape, qk_opts), dk = at::empty(qk_shape, qk_opts),
       dp = at::empty(qk_shape, qk_opts);
  auto dv = at::empty({pb.batch, pb.seq_len, hv, V}, opts);
  auto dg = at::empty({pb.batch, pb.seq_len, hv}, opts.dtype(at::kFloat));
  auto dbeta = at::empty({pb.batch, pb.seq_len, hv}, opts.dtype(at::kFloat));
  p.dq = dq.data_ptr();
  p.dk = dk.data_ptr();
  p.dp = dp.data_ptr();
  p.dqkp_fp32 = per_value_head;
  p.dv = dv.data_ptr();
  p.dg = dg.data_ptr<float>();
  p.dbeta = dbeta.data_ptr<float>();
  core::check_launch(kc::launch_chunk_grad(p, stream), "chunk_comba", "gradients");

  // fp32 per value head -> per query head, through the l2norm when the kernel left it.
  auto per_head = [&](const at::Tensor& x) {
    return grouped ? x.view({pb.batch, pb.seq_len, pb.heads, pb.group(), pb.key_dim}).sum(3) : x;
  };
  auto finish = [&](const at::Tensor& x, const at::Tensor& d) {
    if (!per_value_head) return d;
    return (split && pb.use_l2norm ? l2norm_bwd(x.to(at::kFloat), d) : d).to(pb.dtype);
  };
  InputGrads out;
  out.q = finish(prep.in.q, per_head(dq));
  if (in.p.defined()) {
    out.k = finish(prep.in.k, per_head(dk));
    out.p = finish(prep.in.p, per_head(dp));
  } else if (per_value_head) {  // p = k inside the operator: one normalised vector, two uses
    out.k = finish(prep.in.k, per_head(dk) + per_head(dp));
  } else {
    out.k = (dk.to(at::kFloat) + dp.to(at::kFloat)).to(pb.dtype);
  }
  out.v = dv;
  out.g = dg.to(in.g.scalar_type());
  if (in.beta.defined()) out.beta = dbeta.to(in.beta.scalar_type());
  if (in.initial_state.defined()) out.initial_state = d_initial.to(in.initial_state.scalar_type());
  return out;
}

}  // namespace comba::detail::cuda
