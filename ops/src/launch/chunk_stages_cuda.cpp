// The chunk form's stages on the CUDA kernels (contract: ../chunk_stages.h). Every stage
// fills the kernel parameters from the inputs and the workspace in one place
// (stage_params) and launches one kernel on the current stream.
#include "chunk_stages_cuda.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <utility>
#include <vector>

#include "../../cuda/chunk/chunk_params.h"
#include "comba/core/cuda_launch.h"
#include "comba/ops/comba.h"
#include "kernel_inputs.h"

namespace comba::detail::cuda {

namespace {

namespace kc = comba::cuda;

// The kernels' chunk length is the host's: chunk counts, workspace shapes and the ATen
// reference all use kChunkSize.
static_assert(kc::kChunk == kChunkSize, "kernel chunk length (kChunk) != kChunkSize");

cudaStream_t current_stream() { return at::cuda::getCurrentCUDAStream().stream(); }

// Global chunk numbering into ws: the first chunk of each packed sequence on the device
// (undefined when dense), the number of chunks and, for packed sequences of very different
// lengths, the scans' walks. Reads cu_seqlens back to the host when packed; the backward
// reuses the forward's.
void number_chunks(const CombaProblem& pb, const CombaInputs& in, ChunkWorkspace& ws) {
  if (!pb.varlen) {
    ws.num_chunks = pb.num_seqs * ((pb.seq_len + kc::kChunk - 1) / kc::kChunk);
    return;
  }
  const auto cu_host = in.cu_seqlens.to(at::kCPU).contiguous();
  const auto* b = cu_host.data_ptr<int64_t>();
  std::vector<int> offsets(pb.num_seqs + 1, 0), chunks(pb.num_seqs);
  for (int64_t i = 0; i < pb.num_seqs; ++i) {
    chunks[i] = static_cast<int>((b[i + 1] - b[i] + kc::kChunk - 1) / kc::kChunk);
    offsets[i + 1] = offsets[i] + chunks[i];
  }
  const auto device_ints = [&](const std::vector<int>& v) {
    return at::tensor(v, at::TensorOptions().dtype(at::kInt)).to(in.q.device());
  };
  ws.chunk_offsets = device_ints(offsets);
  ws.num_chunks = offsets.back();
  auto plan = kc::ChunkTraits::plan_scans(chunks, pb.value_heads, static_cast<int>(pb.value_dim),
                                         at::cuda::getCurrentDeviceProperties()->multiProcessorCount);
  if (plan.order.empty()) return;
  ws.scan_short_walks = plan.short_walks;
  plan.order.insert(plan.order.end(), plan.walks.begin(), plan.walks.end());
  ws.scan_plan = device_ints(plan.order);
}

// Launches a scan over all sequences, or the workspace's two launches of walks over
// packed sequences (the short sequences' walks first).
void launch_scans(kc::ChunkParams p, const ChunkWorkspace& ws, int (*launch)(const kc::ChunkParams&, void*),
                  const char* what) {
  if (!ws.scan_plan.defined()) {
    core::check_launch(launch(p, current_stream()), "chunk_comba", what);
    return;
  }
  p.scan_seqs = ws.scan_plan.data_ptr<int>();
  const int* walks = p.scan_seqs + p.num_seqs;
  const int all = static_cast<int>(ws.scan_plan.numel() - p.num_seqs - 1), first = static_cast<int>(ws.scan_short_walks);
  for (const auto& [begin, count] : {std::pair{0, first}, std::pair{first, all - first}}) {
    p.scan_walks = walks + begin;
    p.scan_count = count;
    core::check_launch(launch(p, current_stream()), "chunk_comba", what);
  }
}

void* ptr(const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }
float* float_ptr(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

// What every chunk kernel reads: the inputs, the sizes, the chunk numbering, and the
// workspace tensors ws holds (null where it holds none: not yet written, or released).
kc::ChunkParams stage_params(const CombaProblem& pb, const KernelInputs& kin,
                             const ChunkWorkspace& ws) {
  kc::ChunkParams p;
  kin.bind(p);
  bind_sizes(p, pb);
  p.chunk_offsets = ws.chunk_offsets.defined() ? ws.chunk_offsets.data_ptr<int>() : nullptr;
  p.num_chunks = ws.num_chunks;
  p.w = ptr(ws.w);
  p.tu = ptr(ws.tu);
  p.mqk = ptr(ws.mqk);
  p.qf = float_ptr(ws.qf);
  p.kf = float_ptr(ws.kf);
  p.gamma = float_ptr(ws.gamma);
  p.t_inv = ptr(ws.t_inv);
  p.states = ptr(ws.states);
  p.v_new = ptr(ws.v_new);
  return p;
}

}  // namespace

bool chunk_supported(const CombaProblem& pb, const CombaInputs& in) {
  // 16-byte tile loads: rows of q, k, p, v must be whole 16-byte vectors.
  return in.q.is_cuda() && (pb.dtype == at::kBFloat16 || pb.dtype == at::kHalf) &&
         pb.key_dim <= comba::cuda::kChunkMaxKeyDim && pb.key_dim % 8 == 0 &&
         pb.value_dim % 8 == 0;
}

ChunkWorkspace chunk_prep(const CombaProblem& pb, const CombaInputs& in) {
  ChunkWorkspace ws;
  number_chunks(pb, in, ws);
  return chunk_prep(pb, in, std::move(ws));
}

ChunkWorkspace chunk_prep(const CombaProblem& pb, const CombaInputs& in, ChunkWorkspace ws) {
  TORCH_CHECK(!pb.varlen || ws.chunk_offsets.defined(),
              "chunk_prep: the workspace's packed chunks are not numbered (expected the "
              "chunk_offsets of a forward over the same cu_seqlens)");
  const c10::cuda::CUDAGuard guard(in.q.device());
  const KernelInputs kin(in);
  ws.padded_key_dim = kc::chunk_padded_key_dim(static_cast<int>(pb.key_dim));
  const auto opts = kin.q.options();
  const int64_t nc = ws.num_chunks, hv = pb.value_heads, c = kc::kChunk;
  // W, Tu and Mqk with their rows padded as the scans hold them in shared memory (one bulk
  // copy per tile); the views hide the padding.
  const auto padded_rows = [&](int64_t cols) {
    return at::empty({nc, hv, c, kc::chunk::workspace_ld(static_cast<int>(cols))}, opts).narrow(-1, 0, cols);
  };
  ws.w = padded_rows(ws.padded_key_dim);
  ws.tu = padded_rows(c);
  ws.mqk = padded_rows(c);
  ws.qf = at::empty({nc, hv, c}, opts.dtype(at::kFloat));
  ws.kf = at::empty({nc, hv, c}, opts.dtype(at::kFloat));
  ws.gamma = at::empty({nc, hv}, opts.dtype(at::kFloat));
  ws.t_inv = at::empty({nc, hv, c, c}, opts);
  core::check_launch(kc::launch_chunk_prep(stage_params(pb, kin, ws), current_stream()),
                     "chunk_comba", "prep");
  return ws;
}

CombaForward chunk_scan_fwd(const CombaProblem& pb, const CombaInputs& in, ChunkWorkspace& ws,
                            KeptWorkspace keep) {
  const c10::cuda::CUDAGuard guard(in.q.device());
  const KernelInputs kin(in);
  const auto opts = kin.q.options();
  CombaForward out;
  out.o = at::empty({pb.batch, pb.seq_len, pb.value_heads, pb.value_dim}, opts);
  out.final_state = at::empty({pb.num_seqs, pb.value_heads, pb.key_dim, pb.value_dim},
                              opts.dtype(at::kFloat));
  if (keep != KeptWorkspace::kNone) {
    ws.states = at::empty({ws.num_chunks, pb.value_heads, ws.padded_key_dim, pb.value_dim}, opts);
  }
  if (keep == KeptWorkspace::kAll) {
    ws.v_new = at::empty({ws.num_chunks, pb.value_heads, kc::kChunk, pb.value_dim}, opts);
  }
  auto p = stage_params(pb, kin, ws);  // the kernel writes states and V' where given
  p.o = out.o.data_ptr();
  p.final_state = out.final_state.data_ptr<float>();
  launch_scans(p, ws, kc::launch_chunk_scan_fwd, "scan (forward)");
  return out;
}

void chunk_v_new(const CombaProblem& pb, const CombaInputs& in, ChunkWorkspace& ws) {
  TORCH_CHECK(ws.states.defined() && ws.w.defined() && ws.tu.defined(),
              "chunk_v_new: the workspace holds no states / W / Tu (expected chunk_prep and "
              "the states a forward scan kept)");
  const c10::cuda::CUDAGuard guard(in.q.device());
  const KernelInputs kin(in);
  ws.v_new = at::empty({ws.num_chunks, pb.value_heads, kc::kChunk, pb.value_dim}, kin.q.options());
  core::check_launch(kc::launch_chunk_v_new(stage_params(pb, kin, ws), current_stream()),
                     "chunk_comba", "V' from the states");
}

ChunkStateGrads chunk_scan_bwd(const CombaProblem& pb, const CombaInputs& in,
                               const ChunkWorkspace& ws, const at::Tensor& grad_o,
                               const at::Tensor& grad_final) {
  TORCH_CHECK(ws.states.defined() && ws.v_new.defined() && ws.w.defined(),
              "chunk_scan_bwd: the workspace holds no states / V' / prep operands (expected "
              "chunk_prep, then chunk_scan_fwd keeping kAll or chunk_v_new, before any release)");
  const c10::cuda::CUDAGuard guard(in.q.device());
  const KernelInputs kin(in);
  const auto opts = kin.q.options();
  const int64_t nc = ws.num_chunks, hv = pb.value_heads, V = pb.value_dim;
  const auto d_o = tile_ready(grad_o.to(pb.dtype));
  const auto d_final = grad_final.defined() ? grad_final.to(at::kFloat).contiguous() : at::Tensor();
  ChunkStateGrads sg;
  sg.d_states = at::empty({nc, hv, ws.padded_key_dim, V}, opts);
  sg.dv_new = at::empty({nc, hv, kc::kChunk, V}, opts);
  sg.d_initial = at::empty({pb.num_seqs, hv, pb.key_dim, V}, opts.dtype(at::kFloat));
  auto p = stage_params(pb, kin, ws);
  p.grad_o = d_o.data_ptr();
  p.grad_final = float_ptr(d_final);
  p.d_states = sg.d_states.data_ptr();
  p.dv_new = sg.dv_new.data_ptr();
  p.grad_initial = sg.d_initial.data_ptr<float>();
  launch_scans(p, ws, kc::launch_chunk_scan_bwd, "scan (backward)");
  return sg;
}

ChunkGrads chunk_grads(const CombaProblem& pb, const CombaInputs& in, const ChunkWorkspace& ws,
                       const ChunkStateGrads& sg, const at::Tensor& grad_o) {
  TORCH_CHECK(ws.states.defined() && ws.v_new.defined() && ws.t_inv.defined(),
              "chunk_grads: the workspace holds no states / V' / T (expected chunk_prep, then "
              "chunk_scan_fwd keeping kAll, or chunk_v_new)");
  const c10::cuda::CUDAGuard guard(in.q.device());
  const KernelInputs kin(in);
  const auto opts = kin.q.options();
  const int64_t hv = pb.value_heads, V = pb.value_dim;
  const auto d_o = tile_ready(grad_o.to(pb.dtype));
  // The q, k, p gradients come per value head in fp32 when a GVA group shares a query head
  // or the key tile is split (then also before the l2norm backward), else per query head
  // in the input dtype; finish_chunk_grads does the rest.
  const bool split = kc::chunk_key_split(static_cast<int>(ws.padded_key_dim));
  ChunkGrads out;
  out.per_value_head = pb.group() > 1 || split;
  out.l2norm_pending = split && pb.use_l2norm;
  const auto qk_shape = out.per_value_head
                            ? std::vector<int64_t>{pb.batch, pb.seq_len, hv, pb.key_dim}
                            : std::vector<int64_t>{pb.batch, pb.seq_len, pb.heads, pb.key_dim};
  const auto qk_opts = out.per_value_head ? opts.dtype(at::kFloat) : opts;
  out.dq = at::empty(qk_shape, qk_opts);
  out.dk = at::empty(qk_shape, qk_opts);
  out.dp = at::empty(qk_shape, qk_opts);
  out.dv = at::empty({pb.batch, pb.seq_len, hv, V}, opts);
  out.dg = at::empty({pb.batch, pb.seq_len, hv}, opts.dtype(at::kFloat));
  out.dbeta = at::empty({pb.batch, pb.seq_len, hv}, opts.dtype(at::kFloat));
  out.d_initial = sg.d_initial;
  auto p = stage_params(pb, kin, ws);
  p.grad_o = d_o.data_ptr();
  p.d_states = sg.d_states.data_ptr();
  p.dv_new = sg.dv_new.data_ptr();
  p.dq = out.dq.data_ptr();
  p.dk = out.dk.data_ptr();
  p.dp = out.dp.data_ptr();
  p.dqkp_fp32 = out.per_value_head;
  p.dv = out.dv.data_ptr();
  p.dg = out.dg.data_ptr<float>();
  p.dbeta = out.dbeta.data_ptr<float>();
  core::check_launch(kc::launch_chunk_grad(p, current_stream()), "chunk_comba", "gradients");
  return out;
}

}  // namespace comba::detail::cuda
