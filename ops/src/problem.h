// Validated sizes of one operator call, filled once at the public boundary
// (validate_comba_inputs) and trusted by every layer below.
#pragma once
#include <ATen/ATen.h>


#include "comba/ops/comba.h"

namespace comba::detail {

struct CombaProblem {
  int64_t batch = 0;        // B
  int64_t seq_len = 0;      // T
  int64_t heads = 0;        // H (query / key heads)
  int64_t value_heads = 0;  // HV (a multiple of H)
  int64_t key_dim = 0;      // K
  int64_t value_dim = 0;    // V
  int64_t num_seqs = 0;     // N: B, or the number of packed sequences
  double scale = 1.0;
  bool varlen = false;
  bool use_l2norm = false;
  bool output_final_state = false;
  bool reference_path = false;  // CombaOptions::use_reference_path
  at::ScalarType dtype = at::kFloat;        // q, k, v, p
  at::ScalarType state_dtype = at::kFloat;  // float32, float64 for float64 inputs

  int64_t group() const { return value_heads / heads; }
};

// Sizes of a call whose arguments are known to be valid (used again by backward).
CombaProblem describe_comba_problem(const at::Tensor& q, const at::Tensor& v,
                                    const at::Tensor& cu_seqlens, const CombaOptions& options);

// Checks every argument of chunk_comba / fused_recurrent_comba (named `fn` in messages)
// and returns the sizes. `p` and `beta` may be undefined (defaults: k and ones).
CombaProblem validate_comba_inputs(const char* fn, const at::Tensor& q,
                                   const at::Tensor& k, const at::Tensor& v,
                                   const at::Tensor& p, const at::Tensor& g,
                                   const at::Tensor& beta, const CombaOptions& options);

}  // namespace comba::detail
