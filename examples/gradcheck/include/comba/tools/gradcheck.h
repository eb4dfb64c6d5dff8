// Finite-difference gradient checker for LibTorch functions of fp64 tensors, and its use
// on the Comba operator. Used by the tests (tests/ops/test_gradcheck.cpp) and by the
// `gradcheck` program users run on their own shapes (examples/gradcheck/main.cpp).
//
// Method: a function f(x_1..x_n) -> (y_1..y_m) is reduced to the scalar
// L = sum_i <y_i, R_i> with fixed random R_i (a random projection of the outputs, so
// every output and every element of it matters). The analytic gradient of L comes from
// autograd; the numeric one from central differences (L(x + h e_j) - L(x - h e_j)) / 2h
// in fp64 (outputs subtracted before the reduction, so large outputs lose nothing to
// cancellation), for every element of each input or a seeded random sample of them. Each input
// gets its worst error relative to the size of its gradient:
//   max_rel_error = max_j |analytic_j - numeric_j| / max_j |numeric_j|.
// With h = 1e-6 central differences in fp64 are accurate to ~1e-9 relative on smooth
// functions, so a correct backward shows errors around 1e-9 and a wrong one ~1e-1.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace comba::tools {

struct GradcheckOptions {
  double step = 1e-6;                 // h of the central differences; finite, > 0
  int64_t max_samples_per_input = 0;  // 0: every element; else a random sample of this size
  uint64_t seed = 0;                  // projection and sampling
};

struct InputReport {
  std::string name;
  int64_t numel = 0;
  int64_t checked = 0;           // elements differentiated numerically
  double max_abs_error = 0.0;    // max_j |analytic_j - numeric_j|
  double max_rel_error = 0.0;    // max_abs_error / grad_scale (max_abs_error if grad_scale is 0)
  double grad_scale = 0.0;       // max_j |numeric_j|
  int64_t worst_index = -1;      // flat index of the worst element
  double worst_analytic = 0.0, worst_numeric = 0.0;
};

struct GradcheckReport {
  std::vector<InputReport> inputs;
  // The largest max_rel_error; NaN when any input's is NaN (a NaN never passes).
  double worst_rel_error() const;
};

struct NamedInput {
  std::string name;
  at::Tensor value;  // float64; undefined inputs are passed through and not checked
};

// Outputs may contain undefined tensors (ignored). The function must not keep state
// between calls: it is evaluated 2 * checked + 1 times.
using TensorFunction = std::function<std::vector<at::Tensor>(const std::vector<at::Tensor>&)>;

GradcheckReport gradcheck(const TensorFunction& fn, const std::vector<NamedInput>& inputs,
                          const GradcheckOptions& options = {});

// One JSON object per line (no trailing newline), `context` is spliced in first, e.g.
// "\"function\":\"chunk_comba\"".
std::string to_json(const InputReport& report, const std::string& context, double threshold);
// A number as to_json writes it (4 significant digits), or null when it is not finite:
// JSON has no NaN.
std::string json_number(double value);

// ---- The Comba operator ------------------------------------------------------------------

enum class CombaFunction { kChunk, kFusedRecurrent };
const char* function_name(CombaFunction fn);

// A random fp64 problem; segments (varlen) replace batch and seq_len: B = 1, T = sum.
struct CombaGradcheckConfig {
  int64_t batch = 1, seq_len = 8, heads = 1, value_heads = 2, key_dim = 4, value_dim = 4;
  std::vector<int64_t> segments;
  bool l2norm = false;
  bool initial_state = true;
  bool final_state = true;
  bool with_p = true;     // false: the operator's default p = k
  bool with_beta = true;  // false: the operator's default beta = 1
  c10::optional<double> scale;
  uint64_t seed = 0;      // inputs; options.seed drives the check itself
  GradcheckOptions check;
};

// Checks every floating input (q, k, v, p, g, beta, initial_state) of `fn` on CPU fp64.
GradcheckReport gradcheck_comba(CombaFunction fn, const CombaGradcheckConfig& config);

}  // namespace comba::tools
