// Test cases of the Comba operator: random fp64 inputs for a named shape, the operator run
// at a chosen dtype and device with all gradients, the Eigen oracle run on exactly the
// values the operator saw, and norm-wise comparisons. Shared by every operator test so
// that each test reads as "make case, run, compare".
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "support/oracle.h"

namespace comba::test {

// One shape and option set. Segment lengths (varlen) replace B and T: B = 1, T = sum.
struct CaseConfig {
  std::string name;
  int64_t batch = 1, seq_len = 1, heads = 1, value_heads = 1, key_dim = 16, value_dim = 16;
  bool l2norm = false;
  bool initial_state = false;
  bool final_state = false;
  c10::optional<double> scale;   // nullopt: the operator's K^-0.5 default
  std::vector<int64_t> segments;  // varlen segment lengths; empty: dense
  uint64_t seed = 0;

  int64_t total_len() const;     // T of the tensors
  int64_t total_batch() const;   // B of the tensors
  int64_t num_seqs() const;      // N
  double resolved_scale() const;
};

// GoogleTest-safe readable name, e.g. T65_K100_V16_H3_GVA2_l2norm_h0_final.
std::string describe(const CaseConfig& cfg);

// fp64 CPU tensors of one case. p is always given (a tensor distinct from k); the
// cotangents d_o and d_final_state define the loss sum(o * d_o) + sum(S_N * d_final_state).
struct CaseTensors {
  at::Tensor q, k, v, p, g, beta;
  at::Tensor initial_state;  // undefined unless cfg.initial_state
  at::Tensor cu_seqlens;     // undefined unless varlen
  at::Tensor d_o, d_final_state;
};

CaseTensors make_case(const CaseConfig& cfg);

// Dtypes and device of one operator run.
struct RunConfig {
  at::ScalarType dtype = at::kDouble;       // q, k, v, p
  at::ScalarType gate_dtype = at::kDouble;  // g
  at::ScalarType beta_dtype = at::kDouble;
  at::Device device = at::kCPU;
  bool omit_p = false;     // let the operator default p = k
  bool omit_beta = false;  // let the operator default beta = 1
  bool reference_path = false;  // CombaOptions::use_reference_path
  bool inference = false;  // no input requires grad: the inference kernels, o and final state only
  c10::optional<int64_t> split_length;  // CombaOptions::split_length (chunk_comba)
};

at::ScalarType state_dtype(at::ScalarType dtype);  // fp64 stays fp64, else fp32

// The case's tensors as the operator sees them (cast to the run's dtypes), back in fp64 on
// the CPU: what the oracle must compute on. Cotangents are rounded to the dtypes of o and
// of the state, as autograd hands them to the operator.
CaseTensors round_to_run(const CaseTensors& t, const RunConfig& run);

enum class Fn { kChunk, kRecurrent };
const char* fn_name(Fn fn);

// Outputs and gradients by name: o, final_state, dq, dk, dv, dp, dg, dbeta, dinitial_state
// (the entries that exist for the case), all fp64 on the CPU.
using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Runs the operator forward and backward (autograd) on `t` cast to `run`.
NamedTensors run_operator(Fn fn, const CaseConfig& cfg, const CaseTensors& t,
                          const RunConfig& run);

// The oracle on fp64 tensors (typically round_to_run's result), same names as above.
// With omit_p / omit_beta the oracle gets p = k / beta = 1 and the names follow the
// operator's (dk then includes the p path, no dp / dbeta).
NamedTensors run_oracle(const CaseConfig& cfg, const CaseTensors& t, const RunConfig& run);

// ||x - ref|| / ||ref|| in fp64 (||x|| when ref is zero).
double relative_error(const at::Tensor& x, const at::Tensor& ref);

// Norm-wise tolerances of the operator tests against the oracle.
inline constexpr double kFloat64Tolerance = 1e-10;
inline constexpr double kFloat32Tolerance = 1e-5;  // SPEC section 4

// Tolerance of a result computed from inputs of the low-precision `dtype` (bf16, fp16):
//   2 * relative_error(reference rounded to dtype, reference) + kFloat32Tolerance.
// Any implementation computing in `dtype` commits at least that one rounding per result;
// accumulating in fp32 (SPEC section 1) must keep everything else within the same order,
// so we allow twice the unavoidable rounding error (FlashAttention's "2x the baseline"
// rule, with the exactly rounded reference as the baseline), and the fp32 tolerance as a
// floor for results returned in fp32 (states, g's gradient when g is fp32).
double low_precision_tolerance(const at::Tensor& reference, at::ScalarType dtype);

// The tolerance for results of a run whose q, k, v, p have `dtype`.
double tolerance_for(const at::Tensor& reference, at::ScalarType dtype);

// Tensor-core kernels (16-bit inputs on CUDA) multiply in the input dtype, so their
// intermediates (W, U, the state, T) are rounded to it, as fla's kernels do: the budget
// is three unit roundoffs (bf16 1.2e-2, fp16 1.5e-3; fla's bf16 error is ~3e-3), never
// below the exactly-rounded rule above.
double tensor_core_tolerance(const at::Tensor& reference, at::ScalarType dtype);

// tolerance_for, or tensor_core_tolerance for 16-bit runs on CUDA.
double tolerance_for(const at::Tensor& reference, const RunConfig& run);

// GoogleTest prints parameters with these (instead of raw bytes).
void PrintTo(const CaseConfig& cfg, std::ostream* out);
void PrintTo(Fn fn, std::ostream* out);

// Conversions at the oracle boundary.
std::vector<double> to_vector(const at::Tensor& t);
at::Tensor from_vector(const std::vector<double>& x, at::IntArrayRef sizes);

}  // namespace comba::test
