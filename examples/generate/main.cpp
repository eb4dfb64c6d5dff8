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
#include "comba/io/pretrained.h"
#include "comba/io/text_generation.h"
#include "comba/nn.h"

#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

namespace {

struct Args {
  std::map<std::string, std::string> values;
  bool has(const std::string& key) const { return values.count(key) > 0; }
  std::string get(const std::string& key, const std::string& fallback) const {
    const auto it = values.find(key);
    return it == values.end() ? fallback : it->second;
  }
  int64_t integer(const std::string& key, int64_t fallback) const {
    return has(key) ? std::stoll(values.at(key)) : fallback;
  }
  double real(const std::string& key, double fallback) const { return has(key) ? std::stod(values.at(key)) : fallback; }
};

Args parse(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string key = argv[i];
    if (key.rfind("--", 0) != 0) throw std::invalid_argument("unexpected argument: " + key);
    key = key.substr(2);
    if (key == "json" || key == "bf16" || key == "help") {
      args.values[key] = "1";
    } else if (i + 1 < argc) {
      args.values[key] = argv[++i];
    } else {
      throw std::invalid_argument("missing value for --" + key);
    }
  }
  return args;
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
  try {
    const auto args = parse(argc, argv);
    if (args.has("help")) {
      std::cout << "usage: generate [--vocab N] [--hidden N] [--layers N] [--heads N] [--head-dim N] [--batch N]\n"
                   "                [--prompt-len N] [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P]\n"
                   "                [--seed S] [--eos ID] [--device cpu|cuda] [--bf16] [--json] [--threads N]\n"
                   "       generate --model DIR --prompt TEXT [--max-new-tokens N] [--temperature T] ...\n";
      return 0;
    }
    const bool json = args.has("json");
    if (args.has("threads")) torch::set_num_threads(static_cast<int>(args.integer("threads", 1)));
    torch::manual_seed(static_cast<uint64_t>(args.integer("seed", 0)));
    const torch::Device device(args.get("device", torch::cuda::is_available() ? "cuda" : "cpu"));
    const double temperature = args.real("temperature", 0.0);
    auto options = comba::nn::GenerationOptions()
                       .max_new_tokens(args.integer("max-new-tokens", 32))
                       .do_sample(temperature > 0)
                       .temperature(temperature > 0 ? temperature : 1.0)
                       .top_k(args.integer("top-k", 0))
                       .top_p(args.real("top-p", 1.0))
                       .eos_token_id(args.integer("eos", -1));
    if (options.do_sample() && device.is_cpu()) {
      options.generator(at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(args.integer("seed", 0))));
    }


    // A model folder (config.json + safetensors + tokenizer.model): text in, text out.
    if (args.has("model")) {
      const auto pretrained = comba::io::load_pretrained(
          args.get("model", ""), comba::io::LoadOptions().device(device).dtype(
                                     args.has("bf16") ? torch::kBFloat16 : torch::kFloat));
      const std::string prompt = args.get("prompt", "");
      const auto out = comba::io::generate_text(pretrained, prompt, options);
      if (json) {
        std::cout << "{\"event\":\"text\",\"prompt_tokens\":" << out.prompt_ids.size()
                  << ",\"new_tokens\":" << out.new_ids.size() << "}\n";
      }
      std::cout << prompt << out.text << "\n";
      return 0;
    }

    comba::nn::CombaConfig config;
    config.vocab_size = args.integer("vocab", 256);
    config.hidden_size = args.integer("hidden", 128);
    config.num_hidden_layers = args.integer("layers", 2);
    config.num_heads = args.integer("heads", 2);
    config.head_dim = args.integer("head-dim", 32);
    config.expand_v = 1.0;

    comba::nn::CombaForCausalLM model(config);
    model->to(device, args.has("bf16") ? torch::kBFloat16 : torch::kFloat);
    model->eval();

    // Prompts of different lengths, left-padded into one batch.
    const int64_t batch = args.integer("batch", 2), prompt_len = args.integer("prompt-len", 16);
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
    std::cerr << "generate: " << e.what() << "\n";
    return 1;
  }
}
