// gradcheck: finite-difference check of the Comba operator's gradients on a shape of your
// choice. Prints one JSON line per function and input (worst relative error of the
// analytic gradient against fp64 central differences) and a summary line per function;
// exits 1 when any input is above --threshold or its error is NaN, 2 on bad arguments (a
// failure prints its message; the C++ backtrace too with --debug or COMBA_DEBUG=1).
//
//   gradcheck --T 65 --K 32 --V 16 --H 2 --HV 4 --l2norm --varlen 0,1,63,65 --samples 200
#include <cstdint>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "comba/core/cli.h"
#include "comba/tools/gradcheck.h"

namespace {

namespace cli = comba::cli;
using comba::tools::CombaFunction;

struct Args {
  comba::tools::CombaGradcheckConfig config;
  std::vector<CombaFunction> functions;
  double threshold = 1e-6;
  bool debug = false;
};

// Fills `args` from the command line; std::nullopt: go on, else main's exit status.
std::optional<int> parse(int argc, char** argv, Args& args) {
  CLI::App app{"Finite-difference check of the Comba operator's gradients (CPU, fp64).", "gradcheck"};
  cli::configure(app);
  auto& c = args.config;
  c.seq_len = 16;
  c.key_dim = c.value_dim = 8;
  const auto count = cli::integer_at_least(0);
  auto* batch = app.add_option("--B", c.batch, "batch")->check(count);
  auto* seq_len = app.add_option("--T", c.seq_len, "sequence length")->check(count);
  app.add_option("--H", c.heads, "query/key heads")->check(count);
  app.add_option("--HV", c.value_heads, "value heads")->check(count);
  app.add_option("--K", c.key_dim, "key dimension")->check(count);
  app.add_option("--V", c.value_dim, "value dimension")->check(count);
  app.add_option("--varlen", c.segments, "packed sequences of these lengths, L0,L1,... (B = 1, T = their sum)")
      ->delimiter(',')
      ->allow_extra_args(false)
      ->check(count)
      ->excludes(batch)
      ->excludes(seq_len);
  app.add_flag("--l2norm", c.l2norm, "use_qk_l2norm_in_kernel");
  double scale = 0.0;
  auto* scale_option =
      app.add_option("--scale", scale, "scale (default K^-0.5)")->check(cli::finite_number())->default_str("");
  bool no_initial_state = false, no_final_state = false, no_p = false, no_beta = false;
  app.add_flag("--no-initial-state", no_initial_state, "no initial state");
  app.add_flag("--no-final-state", no_final_state, "no final state");
  app.add_flag("--no-p", no_p, "p = k (the operator's default)");
  app.add_flag("--no-beta", no_beta, "beta = 1 (the operator's default)");
  std::vector<std::string> functions = {"chunk", "recurrent"};
  app.add_option("--functions", functions, "which functions, comma separated")
      ->delimiter(',')
      ->allow_extra_args(false)
      ->check(cli::one_of({"chunk", "recurrent"}));
  app.add_option("--samples", c.check.max_samples_per_input, "check N random elements per input (0: all)")
      ->check(count);
  // h = 0 would divide 0 by 0: every numeric gradient NaN.
  app.add_option("--step", c.check.step, "finite-difference step h")
      ->check(cli::number_in(cli::open(0), cli::unbounded()));
  app.add_option("--threshold", args.threshold, "fail above this relative error")
      ->check(cli::number_in(cli::closed(0), cli::unbounded()));
  int64_t seed = 0;
  app.add_option("--seed", seed, "inputs, projection and sampling")->check(count);
  cli::add_debug_flag(app, args.debug);

  if (const auto status = cli::parse(app, argc, argv)) return status;
  if (*scale_option) c.scale = scale;
  c.initial_state = !no_initial_state;
  c.final_state = !no_final_state;
  c.with_p = !no_p;
  c.with_beta = !no_beta;
  c.seed = c.check.seed = static_cast<uint64_t>(seed);
  for (const auto& name : functions) {
    args.functions.push_back(name == "chunk" ? CombaFunction::kChunk : CombaFunction::kFusedRecurrent);
  }
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (const auto status = parse(argc, argv, args)) return *status;
  bool all_pass = true;
  for (const CombaFunction fn : args.functions) {
    const std::string context = std::string("\"function\":\"") + function_name(fn) + '"';
    comba::tools::GradcheckReport report;
    try {
      report = comba::tools::gradcheck_comba(fn, args.config);
    } catch (const std::exception& e) {
      // The operator rejected the shape: its message names the argument.
      return cli::report_error("gradcheck", e, args.debug, cli::kUsageError);
    }
    for (const auto& input : report.inputs) {
      std::cout << comba::tools::to_json(input, context, args.threshold) << '\n';
    }
    const double worst = report.worst_rel_error();  // NaN when any input's error is NaN
    const bool pass = worst <= args.threshold;      // false for NaN
    all_pass = all_pass && pass;
    std::cout << '{' << context << ",\"summary\":true,\"worst_rel_error\":" << comba::tools::json_number(worst)
              << ",\"threshold\":" << args.threshold << ",\"pass\":" << (pass ? "true" : "false") << "}\n";
  }
  return all_pass ? 0 : 1;
}
