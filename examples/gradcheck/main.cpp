// gradcheck: finite-difference check of the Comba operator's gradients on a shape of your
// choice. Prints one JSON line per function and input (worst relative error of the
// analytic gradient against fp64 central differences) and a summary line per function;
// exits 1 when any input is above --threshold, 2 on bad arguments.
//
//   gradcheck --T 65 --K 32 --V 16 --H 2 --HV 4 --l2norm --varlen 0,1,63,65 --samples 200
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "comba/tools/gradcheck.h"

namespace {

using comba::tools::CombaFunction;

constexpr const char* kUsage = R"(usage: gradcheck [options]
  --B N --T N --H N --HV N --K N --V N   shape (defaults 1, 16, 1, 2, 8, 8)
  --varlen L0,L1,...    packed sequences of these lengths (B = 1, T = their sum)
  --l2norm              use_qk_l2norm_in_kernel
  --scale X             scale (default K^-0.5)
  --no-initial-state    --no-final-state    --no-p (p = k)    --no-beta (beta = 1)
  --functions LIST      chunk,recurrent (default both)
  --samples N           check N random elements per input (default 0: all)
  --step H              finite-difference step (default 1e-6)
  --threshold X         fail above this relative error (default 1e-6)
  --seed N              inputs, projection and sampling
)";

struct Args {
  comba::tools::CombaGradcheckConfig config;
  std::vector<CombaFunction> functions{CombaFunction::kChunk, CombaFunction::kFusedRecurrent};
  double threshold = 1e-6;
  bool t_given = false;
};

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, ',');) parts.push_back(part);
  return parts;
}

Args parse(int argc, char** argv) {
  Args args;
  args.config.seq_len = 16;
  args.config.key_dim = args.config.value_dim = 8;
  auto& c = args.config;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(flag + " needs a value");
      return argv[++i];
    };
    auto integer = [&]() -> int64_t {
      const std::string text = value();
      size_t used = 0;
      const long long n = std::stoll(text, &used);
      if (used != text.size() || n < 0) throw std::invalid_argument(flag + " expects a count, got " + text);
      return n;
    };
    if (flag == "--help" || flag == "-h") {
      std::cout << kUsage;
      std::exit(0);
    } else if (flag == "--B") c.batch = integer();
    else if (flag == "--T") c.seq_len = integer(), args.t_given = true;
    else if (flag == "--H") c.heads = integer();
    else if (flag == "--HV") c.value_heads = integer();
    else if (flag == "--K") c.key_dim = integer();
    else if (flag == "--V") c.value_dim = integer();
    else if (flag == "--varlen") {
      c.segments.clear();
      for (const auto& part : split(value())) c.segments.push_back(std::stoll(part));
    } else if (flag == "--l2norm") c.l2norm = true;
    else if (flag == "--scale") c.scale = std::stod(value());
    else if (flag == "--no-initial-state") c.initial_state = false;
    else if (flag == "--no-final-state") c.final_state = false;
    else if (flag == "--no-p") c.with_p = false;
    else if (flag == "--no-beta") c.with_beta = false;
    else if (flag == "--samples") c.check.max_samples_per_input = integer();
    else if (flag == "--step") c.check.step = std::stod(value());
    else if (flag == "--threshold") args.threshold = std::stod(value());
    else if (flag == "--seed") c.seed = c.check.seed = static_cast<uint64_t>(integer());
    else if (flag == "--functions") {
      args.functions.clear();
      for (const auto& name : split(value())) {
        if (name == "chunk") args.functions.push_back(CombaFunction::kChunk);
        else if (name == "recurrent") args.functions.push_back(CombaFunction::kFusedRecurrent);
        else throw std::invalid_argument("--functions takes chunk and/or recurrent, got " + name);
      }
    } else {
      throw std::invalid_argument("unknown argument " + flag);
    }
  }
  return args;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  try {
    args = parse(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "gradcheck: " << e.what() << "\n" << kUsage;
    return 2;
  }
  if (args.t_given && !args.config.segments.empty()) {
    std::cerr << "gradcheck: --varlen given, T is the sum of its lengths (--T ignored)\n";
  }
  bool all_pass = true;
  for (const CombaFunction fn : args.functions) {
    const std::string context = std::string("\"function\":\"") + function_name(fn) + '"';
    comba::tools::GradcheckReport report;
    try {
      report = comba::tools::gradcheck_comba(fn, args.config);
    } catch (const std::exception& e) {
      // The operator rejected the shape: its message names the argument.
      std::cerr << "gradcheck: " << e.what() << '\n';
      return 2;
    }
    for (const auto& input : report.inputs) {
      std::cout << comba::tools::to_json(input, context, args.threshold) << '\n';
    }
    const double worst = report.worst_rel_error();
    const bool pass = worst <= args.threshold;  // false for NaN
    all_pass = all_pass && pass;
    std::cout << '{' << context << ",\"summary\":true,\"worst_rel_error\":" << worst
              << ",\"threshold\":" << args.threshold << ",\"pass\":" << (pass ? "true" : "false")
              << "}\n";
  }
  return all_pass ? 0 : 1;
}
