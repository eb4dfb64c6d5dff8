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
  const auto state_options = q.options().dtype(pb.state_dtype);
  const auto index_options = at::TensorOptions().dtype(at::kLong);
  auto inner = [&](const std::vector<int64_t>& segment_bounds, const at::Tensor& initial, bool final_state) {
    const auto cu = at::tensor(segment_bounds, index_options).to(q.device());
    return CombaOptions(options).cu_seqlens(cu).initial_state(initial).output_final_state(final_state).split_length(0);
  };

  // The transitions are needed only for segments that have a successor: the first run
  // takes those, as packed sequences of their own. Their tokens are a prefix of the row
  // when one sequence is split (then a view), else gathered.
  std::vector<int64_t> mapped(count, -1);  // segment -> its place in the first run
  std::vector<int64_t> bounds{0}, tokens;
  bool prefix = true;
  for (int64_t i = 0; i < pb.num_seqs; ++i) {
    for (int64_t seg = segments.first[i]; seg + 1 < segments.first[i + 1]; ++seg) {
      const int64_t bos = segments.bounds[seg], eos = segments.bounds[seg + 1];
      prefix = prefix && bos == bounds.back();
      mapped[seg] = static_cast<int64_t>(bounds.size()) - 1;
      bounds.push_back(bounds.back() + eos - bos);
      for (int64_t t = bos; t < eos; ++t) tokens.push_back(t);
    }
  }
  const auto index = prefix ? at::Tensor() : at::tensor(tokens, index_options).to(q.device());
  auto first_run = [&](const at::Tensor& x) {
    return !x.defined() ? x : prefix ? x.narrow(1, 0, bounds.back()) : x.index_select(1, index);
  };
  auto first_run_optional = [&](const c10::optional<at::Tensor>& x) {
    return x ? c10::optional<at::Tensor>(first_run(*x)) : c10::nullopt;
  };

  // Each from the state [0 | I]: with values [v | 0] the final state is [L | M].
  const auto v1 = first_run(vf);
  const auto v_aug = at::cat({v1, at::zeros({1, v1.size(1), HV, K}, v1.options())}, -1);
  const auto from_identity = at::cat({at::zeros({K, V}, state_options), at::eye(K, state_options)}, 1)
                                 .expand({static_cast<int64_t>(bounds.size()) - 1, HV, K, V + K})
                                 .contiguous();
  const auto maps = std::get<1>(chunk_comba(first_run(qf), first_run(kf), v_aug, first_run_optional(pf),
                                            first_run(gf), first_run_optional(betaf),
                                            inner(bounds, from_identity, true)));
  const auto offsets = maps.narrow(-1, 0, V);      // L [segments with a successor, HV, K, V]
  const auto transitions = maps.narrow(-1, V, K);  // M [.., HV, K, K]

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
      m.push_back(transitions.select(0, mapped[seg]));
      s.push_back(starts[seg]);
      l.push_back(offsets.select(0, mapped[seg]));
    }
    const auto next = at::matmul(at::stack(m), at::stack(s)) + at::stack(l);
    for (size_t n = 0; n < moving.size(); ++n) starts[moving[n] + 1] = next.select(0, static_cast<int64_t>(n));
  }

  // Outputs and final states from the true initial states, every segment at once.
  auto [o, ends] =
      chunk_comba(qf, kf, vf, pf, gf, betaf, inner(segments.bounds, at::stack(starts), pb.output_final_state));
  o = o.reshape({pb.batch, pb.seq_len, HV, V});
  if (!pb.output_final_state) return {o, at::Tensor()};
  std::vector<int64_t> last(pb.num_seqs);
  for (int64_t i = 0; i < pb.num_seqs; ++i) last[i] = segments.first[i + 1] - 1;
  return {o, ends.index_select(0, at::tensor(last, index_options).to(ends.device()))};
}

}  // namespace comba::detail
