// The test oracle: an fp64 Comba recurrence (SPEC section 1) and its hand-derived reverse
// pass, written with Eigen on plain std::vectors so that it shares no code and no ATen
// arithmetic with the operator under test. Small and slow on purpose: readable loops over
// sequences, value heads and tokens, one K x V state matrix at a time.
//
// Layouts are the operator's, row-major, flattened:
//   q, k, p [B, T, H, K]   v, o [B, T, HV, V]   g, beta [B, T, HV]   state [N, HV, K, V]
// With cu_seqlens, B = 1 and sequence n covers tokens [cu[n], cu[n+1]).
#pragma once
#include <cstdint>
#include <vector>

namespace comba::test {

struct OracleProblem {
  int64_t batch = 1;        // B
  int64_t seq_len = 1;      // T
  int64_t heads = 1;        // H
  int64_t value_heads = 1;  // HV, a multiple of H
  int64_t key_dim = 1;      // K
  int64_t value_dim = 1;    // V
  double scale = 1.0;       // the caller resolves the K^-0.5 default
  bool l2norm = false;
  std::vector<int64_t> cu_seqlens;  // empty: dense batch

  int64_t num_seqs() const;
  int64_t qk_numel() const { return batch * seq_len * heads * key_dim; }
  int64_t v_numel() const { return batch * seq_len * value_heads * value_dim; }
  int64_t gate_numel() const { return batch * seq_len * value_heads; }
  int64_t state_numel() const { return num_seqs() * value_heads * key_dim * value_dim; }
};

// Every input explicit: callers pass p = k and beta = 1 for the operator's defaults.
struct OracleInputs {
  std::vector<double> q, k, v, p, g, beta;
  std::vector<double> initial_state;  // empty: zeros
};

struct OracleOutputs {
  std::vector<double> o;            // [B, T, HV, V]
  std::vector<double> final_state;  // [N, HV, K, V]
};

// Gradients of  sum(o * d_o) + sum(final_state * d_final_state)  for every input.
struct OracleGrads {
  std::vector<double> q, k, v, p, g, beta, initial_state;
};

OracleOutputs oracle_forward(const OracleProblem& pb, const OracleInputs& in);

// `d_final_state` may be empty (the final state does not enter the loss).
OracleGrads oracle_backward(const OracleProblem& pb, const OracleInputs& in,
                            const std::vector<double>& d_o,
                            const std::vector<double>& d_final_state);

}  // namespace comba::test
