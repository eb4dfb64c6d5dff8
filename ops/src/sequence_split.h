// chunk_comba with long sequences cut into segments that run side by side (intra-GPU
// sequence parallelism, CombaOptions::split_length).
//
// A segment's effect on the state is affine: S_out = M S_in + L, with M [K, K] the product
// of its tokens' transitions (exp(g) I - beta k p^T) and L the state it reaches from zero.
// Both come from one chunk_comba run over every segment that has a successor (as packed
// sequences) with values [v | 0_K] and initial states [0 | I_K]: the final state is [L | M]. A short scan
// over each sequence's segments, S_{j+1} = M_j S_j + L_j (from the sequence's initial
// state), gives every segment's true initial state, and a second run over the segments
// from those gives the outputs and final states. Every step is differentiable, so autograd
// composes the backward (both runs' backwards, every segment in parallel, and the scan's).
#pragma once
#include <ATen/ATen.h>

#include <c10/util/Optional.h>

#include <tuple>
#include <vector>

#include "problem.h"

namespace comba::detail {

// The segments of a split call, as packed sequences over the call's B * T tokens.
struct SequenceSegments {
  std::vector<int64_t> bounds;  // [segments + 1] token boundaries, in order
  std::vector<int64_t> first;   // [N + 1]: sequence i owns segments first[i] .. first[i + 1] - 1
};

// The segments chunk_comba is cut into, or nullopt: no split length set (the automatic
// choice never splits: slower at every shape timed, benchmarks/NOTES.md, stop 33), 0, or no sequence longer than
// it. Reads cu_seqlens on the host when packed and a split length is set.
c10::optional<SequenceSegments> plan_sequence_split(const CombaProblem& pb, const CombaOptions& options);

// chunk_comba's (o, final_state) through the split; the inputs are validated, `pb`
// describes them, `p` and `beta` may be undefined.
std::tuple<at::Tensor, at::Tensor> chunk_comba_split(const CombaProblem& pb, const SequenceSegments& segments,
                                                     const at::Tensor& q, const at::Tensor& k,
                                                     const at::Tensor& v, const at::Tensor& p,
                                                     const at::Tensor& g, const at::Tensor& beta,
                                                     const CombaOptions& options);

}  // namespace comba::detail
