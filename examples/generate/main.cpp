// examples/generate: text generation with a Comba causal LM and its decode cache. Without a
// checkpoint it builds a random-initialised model from the flags (a smoke test of the whole
// path: left-padded prefill through the chunk form, then one token per step through the
// recurrent form). Prints the token ids and throughput; --json prints JSON lines instead.
//
//   generate [--vocab 256] [--hidden 128] [--layers 2] [--heads 2] [--head-dim 32]
//            [--batch 2] [--prompt-len 16] [--max-new-tokens 32] [--temperature T]
//            [--top-k K] [--top-p P] [--seed S] [--eos ID] [--device cpu|cuda] [--bf16] [--json]
//            [--threads N]   (CPU intra-op threads; 1 is far faster on a busy small machine)
//   generate --model DIR --prompt "text" [sampling options]   (a model folder with tokenizer.model)
// Flags are checked as they are parsed (comba/core/cli.h): an unknown flag or a bad value is
// an error naming it (exit 2); --temperature 0 is greedy. A failure prints its message; the
// C++ backtrace too with --debug or COMBA_DEBUG=1.
#include "comba/core/cli.h"
#include "comba/io/pretrained.h"
#include "comba/io/text_generation.h"
#include "comba/nn.h"

#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace cli = comba::cli;

struct Args {
  // The random-initialised model.
  int64_t vocab = 256, hidden = 128, layers = 2, heads = 2, head_dim = 32;
  int64_t batch = 2, prompt_len = 16;
  // A model folder and its prompt.
  std::string model, prompt;
  // Generation.
  int64_t max_new_tokens = 32, top_k = 0, eos = -1, seed = 0, threads = 0;
  double temperature = 0.0, top_p = 1.0;
  std::string device = torch::cuda::is_available() ? "cuda" : "cpu";
  bool bf16 = false, json = false, debug = false;
};

void add_options(CLI::App& app, Args& a) {
  cli::configure(app);
  const auto positive = cli::integer_at_least(1);
  std::vector<CLI::Option*> shape = {
      // Token 0 pads the prompts, which are drawn from 1 .. vocab - 1.
      app.add_option("--vocab", a.vocab, "vocabulary of the random model")->check(cli::integer_at_least(2)),
      app.add_option("--hidden", a.hidden, "hidden size")->check(positive),
      app.add_option("--layers", a.layers, "layers")->check(positive),
      app.add_option("--heads", a.heads, "heads")->check(positive),
      app.add_option("--head-dim", a.head_dim, "head dimension")->check(positive),
      app.add_option("--batch", a.batch, "prompts (rows)")->check(positive),
      app.add_option("--prompt-len", a.prompt_len, "tokens per prompt (rows after the first are left-padded)")
          ->check(positive)};
  auto* model = app.add_option("--model", a.model, "a model folder (config.json, safetensors, tokenizer.model)");
  app.add_option("--prompt", a.prompt, "the text to continue (with --model)")->needs(model);
  // The random model's shape means nothing next to a model folder.
  for (auto* option : shape) option->excludes(model);
  app.add_option("--max-new-tokens", a.max_new_tokens, "tokens to generate per row")
      ->check(cli::integer_at_least(0));
  app.add_option("--temperature", a.temperature, "0: greedy; > 0: sample at this temperature")
      ->check(cli::number_in(cli::closed(0), cli::unbounded()));
  app.add_option("--top-k", a.top_k, "sample among the k best tokens (0: all; needs --temperature > 0)")
      ->check(cli::integer_at_least(0));
  app.add_option("--top-p", a.top_p, "sample from the smallest set holding this much mass (1: all; needs "
                                     "--temperature > 0)")
      ->check(cli::number_in(cli::open(0), cli::closed(1)));
  app.add_option("--eos", a.eos, "stop a row at this token id (-1: never)")->check(cli::integer_at_least(-1));
  app.add_option("--seed", a.seed, "random model, prompts and sampling")->check(cli::integer_at_least(0));
  app.add_option("--device", a.device, "cpu, cuda or cuda:N (cuda when available)")->check(cli::device_name());
  app.add_flag("--bf16", a.bf16, "bfloat16 weights and activations");
  app.add_flag("--json", a.json, "JSON lines instead of text");
  app.add_option("--threads", a.threads, "CPU intra-op threads (0: LibTorch's choice; 1 is far faster on a busy "
                                         "small machine)")
      ->check(cli::integer_at_least(0, std::numeric_limits<int>::max()));
  cli::add_debug_flag(app, a.debug);
}

std::string row_to_string(const torch::Tensor& row) {
  std::ostringstream out;
  out << '[';
  const auto values = row.to(torch::kCPU).contiguous();
  for (int64_t i = 0; i < values.size(0); ++i) out << (i ? ", " : "") << values[i].item<int64_t>();
  out << ']';
  return out.str();
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  CLI::App app{"Text generation with a Comba causal LM: a random-initialised one built from the flags "
               "(token ids and speed), or a model folder (--model DIR --prompt TEXT).",
               "generate"};
  add_options(app, args);
  if (const auto status = cli::parse(app, argc, argv)) return *status;
  if (args.model.empty() && args.eos >= args.vocab) {
    return cli::usage_error(app, "--eos: expected a token id below --vocab = " + std::to_string(args.vocab) +
                                     ", got " + std::to_string(args.eos));
  }
  // Greedy decoding would ignore them.
  for (const char* sampling : {"--top-k", "--top-p"}) {
    if (args.temperature == 0 && app.count(sampling) > 0) {
      return cli::usage_error(app, std::string(sampling) + " samples: it needs --temperature > 0 (0 is greedy)");
    }
  }
  try {
    const bool json = args.json;
    if (args.threads > 0) torch::set_num_threads(static_cast<int>(args.threads));
    torch::manual_seed(static_cast<uint64_t>(args.seed));
    const torch::Device device(args.device);
    const double temperature = args.temperature;  // 0: greedy
    auto options = comba::nn::GenerationOptions()
                       .max_new_tokens(args.max_new_tokens)
                       .do_sample(temperature > 0)
                       .temperature(temperature > 0 ? temperature : 1.0)
                       .top_k(args.top_k)
                       .top_p(args.top_p)
                       .eos_token_id(args.eos);
    if (options.do_sample() && device.is_cpu()) {
      options.generator(at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(args.seed)));
    }

    // A model folder (config.json + safetensors + tokenizer.model): text in, text out.
    if (!args.model.empty()) {
      const auto pretrained = comba::io::load_pretrained(
          args.model, comba::io::LoadOptions().device(device).dtype(args.bf16 ? torch::kBFloat16 : torch::kFloat));
      const std::string& prompt = args.prompt;
      const auto out = comba::io::generate_text(pretrained, prompt, options);
      if (json) {
        std::cout << "{\"event\":\"text\",\"prompt_tokens\":" << out.prompt_ids.size()
                  << ",\"new_tokens\":" << out.new_ids.size() << "}\n";
      }
      std::cout << prompt << out.text << "\n";
      return 0;
    }

    comba::nn::CombaConfig config;
    config.vocab_size = args.vocab;
    config.hidden_size = args.hidden;
    config.num_hidden_layers = args.layers;
    config.num_heads = args.heads;
    config.head_dim = args.head_dim;
    config.expand_v = 1.0;

    comba::nn::CombaForCausalLM model(config);
    model->to(device, args.bf16 ? torch::kBFloat16 : torch::kFloat);
    model->eval();

    // Prompts of different lengths, left-padded into one batch.
    const int64_t batch = args.batch, prompt_len = args.prompt_len;
    auto ids = torch::randint(1, config.vocab_size, {batch, prompt_len}, torch::kLong);
    auto mask = torch::ones({batch, prompt_len}, torch::kLong);
    for (int64_t b = 1; b < batch; ++b) {
      const int64_t pad = std::min(prompt_len - 1, b * prompt_len / (2 * batch));
      ids[b].slice(0, 0, pad).fill_(0);
      mask[b].slice(0, 0, pad).fill_(0);
    }
    ids = ids.to(device);
    mask = mask.to(device);

    const auto start = std::chrono::steady_clock::now();
    const auto out = comba::nn::generate(model, ids, mask, options);
    if (device.is_cuda()) torch::cuda::synchronize();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double tokens_per_s = static_cast<double>(batch * out.steps) / std::max(seconds, 1e-9);

    for (int64_t b = 0; b < batch; ++b) {
      const auto prompt = row_to_string(ids[b].masked_select(mask[b].ne(0)));
      const auto generated = row_to_string(out.new_tokens[b]);
      if (json) {
        std::cout << "{\"event\":\"sequence\",\"row\":" << b << ",\"prompt\":" << prompt << ",\"generated\":" << generated
                  << "}\n";
      } else {
        std::cout << "row " << b << " prompt " << prompt << "\n      generated " << generated << "\n";
      }
    }
    if (json) {
      std::cout << "{\"event\":\"summary\",\"device\":\"" << device << "\",\"batch\":" << batch << ",\"steps\":" << out.steps
                << ",\"seconds\":" << seconds << ",\"tokens_per_s\":" << tokens_per_s << "}\n";
    } else {
      std::cout << "generated " << out.steps << " tokens x " << batch << " rows on " << device << " in " << seconds
                << " s (" << tokens_per_s << " tokens/s)\n";
    }
    return 0;
  } catch (const std::exception& e) {
    return cli::report_error("generate", e, args.debug);
  }
}
