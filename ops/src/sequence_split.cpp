#include "sequence_split.h"

#include <algorithm>

namespace comba::detail {

namespace {

// Each sequence's [bos, eos) in the flattened B * T token order.
std::vector<int64_t> sequence_bounds(const CombaProblem& pb, const CombaOptions& options) {
  std::vector<int64_t> bounds(pb.num_seqs + 1);
  if (pb.varlen) {
    const auto cu = options.cu_seqlens().to(at::kCPU).contiguous();
    std::copy_n(cu.data_ptr<int64_t>(), bounds.size(), bounds.begin());
  } else {
    for (int64_t i = 0; i <= pb.num_seqs; ++i) bounds[i] = i * pb.seq_len;
  }
  return bounds;
}

c10::optional<at::Tensor> undefined_as_none(const at::Tensor& x) {
  return x.defined() ? c10::optional<at::Tensor>(x) : c10::nullopt;
}

// [B, T, ...] -> [1, B * T, ...]: the segments are packed sequences over all tokens.
at::Tensor flat(const at::Tensor& x) { return x.defined() ? x.flatten(0, 1).unsqueeze(0) : x; }

}  // namespace

c10::optional<SequenceSegments> plan_sequence_split(const CombaProblem& pb, const CombaOptions& options) {
  const int64_t length = options.split_length().value_or(0);
  if (length == 0) return c10::nullopt;
  const auto seqs = sequence_bounds(pb, options);
  int64_t longest = 0;
  for (size_t i = 0; i + 1 < seqs.size(); ++i) longest = std::max(longest, seqs[i + 1] - seqs[i]);
  if (longest <= length) return c10::nullopt;
  SequenceSegments segments;
  segments.bounds.push_back(0);
  segments.first.push_back(0);
  for (size_t i = 0; i + 1 < seqs.size(); ++i) {
    // At least one segment, an empty one for an empty sequence (its final state is its
    // initial state); the last may be short, down to one token.
    int64_t t = seqs[i];
    do {
      t = std::min(seqs[i + 1], t + length);
      segments.bounds.push_back(t);
    } while (t < seqs[i + 1]);
    segments.first.push_back(static_cast<int64_t>(segments.bounds.size()) - 1);
  }
  return segments;
}

std::tuple<at::Tensor, at::Tensor> chunk_comba_split(const CombaProblem& pb, const SequenceSegments& segments,
                                                     const at::Tensor& q, const at::Tensor& k,
                                                     const at::Tensor& v, const at::Tensor& p,
                                                     const at::Tensor& g, const at::Tensor& beta,
                                                     const CombaOptions& options) {
  const int64_t K = pb.key_dim, V = pb.value_dim, HV = pb.value_heads;
  const auto count = static_cast<int64_t>(segments.bounds.size()) - 1;
  const auto qf = flat(q), kf = flat(k), vf = flat(v), gf = flat(g);
  const auto pf = undefined_as_none(flat(p)), betaf = undefined_as_none(flat(beta));
  const auto cu = at::tensor(segments.bounds, at::TensorOptions().dtype(at::kLong)).to(q.device());
  const auto state_options = q.options().dtype(pb.state_dtype);
  auto inner = [&](const at::Tensor& initial, bool final_state) {
    return CombaOptions(options).cu_seqlens(cu).initial_state(initial).output_final_state(final_state).split_length(0);
  };

  // Every segment from the state [0 | I]: with values [v | 0] the final state is [L | M].
  const auto v_aug = at::cat({vf, at::zeros({1, vf.size(1), HV, K}, vf.options())}, -1);
  const auto from_identity = at::cat({at::zeros({K, V}, state_options), at::eye(K, state_options)}, 1)
                                 .expand({count, HV, K, V + K})
                                 .contiguous();
  const auto maps = std::get<1>(chunk_comba(qf, kf, v_aug, pf, gf, betaf, inner(from_identity, true)));
  const auto offsets = maps.narrow(-1, 0, V);      // L [count, HV, K, V]
  const auto transitions = maps.narrow(-1, V, K);  // M [count, HV, K, K]

  // The scan over segments, all sequences at once: step j moves every sequence that has
  // a segment j + 1 from its segment j's initial state to the next one's.
  const auto& initial = options.initial_state();
  std::vector<at::Tensor> starts(count);
  int64_t most = 0;
  for (int64_t i = 0; i < pb.num_seqs; ++i) {
    const int64_t first = segments.first[i];
    starts[first] = initial.defined() ? initial.select(0, i) : at::zeros({HV, K, V}, state_options);
    most = std::max(most, segments.first[i + 1] - first);
  }
  for (int64_t j = 0; j + 1 < most; ++j) {
    std::vector<int64_t> moving;  // segment j of each sequence with more than j + 1 segments
    for (int64_t i = 0; i < pb.num_seqs; ++i) {
      if (segments.first[i + 1] - segments.first[i] > j + 1) moving.push_back(segments.first[i] + j);
    }
    std::vector<at::Tensor> m, s, l;
    for (const int64_t seg : moving) {
      m.push_back(transitions.select(0, seg));
      s.push_back(starts[seg]);
      l.push_back(offsets.select(0, seg));
    }
    const auto next = at::matmul(at::stack(m), at::stack(s)) + at::stack(l);
    for (size_t n = 0; n < moving.size(); ++n) starts[moving[n] + 1] = next.select(0, static_cast<int64_t>(n));
  }

  // Outputs and final states from the true initial states, every segment at once.
  auto [o, ends] = chunk_comba(qf, kf, vf, pf, gf, betaf, inner(at::stack(starts), pb.output_final_state));
  o = o.view({pb.batch, pb.seq_len, HV, V});
  if (!pb.output_final_state) return {o, at::Tensor()};
  std::vector<int64_t> last(pb.num_seqs);
  for (int64_t i = 0; i < pb.num_seqs; ++i) last[i] = segments.first[i + 1] - 1;
  const auto index = at::tensor(last, at::TensorOptions().dtype(at::kLong)).to(ends.device());
  return {o, ends.index_select(0, index)};
}

}  // namespace comba::detail
