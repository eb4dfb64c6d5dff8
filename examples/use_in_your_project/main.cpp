// Uses Comba from another project: the operator directly, then a small causal LM (one
// training step, a greedy generation, and a round trip through a model folder that fla
// can read). Exits non-zero if anything is off.
#include <comba/io/pretrained.h>
#include <comba/nn.h>
#include <comba/ops/comba.h>

#include <torch/torch.h>

#include <cstdlib>
#include <iostream>
#include <string>

int main() {
  torch::manual_seed(0);

  // The operator: q, k, v [B, T, H, K]; g, beta [B, T, H]; both forms agree.
  const auto q = torch::randn({1, 10, 2, 16}), k = torch::randn({1, 10, 2, 16}), v = torch::randn({1, 10, 2, 16});
  const auto g = -torch::rand({1, 10, 2}), beta = torch::rand({1, 10, 2});
  const auto options = comba::CombaOptions().use_qk_l2norm_in_kernel(true);
  const auto [o_chunk, s_chunk] = comba::chunk_comba(q, k, v, c10::nullopt, g, beta, options);
  const auto [o_step, s_step] = comba::fused_recurrent_comba(q, k, v, c10::nullopt, g, beta, options);
  const double op_gap = (o_chunk - o_step).abs().max().item<double>();

  // The model.
  comba::nn::CombaConfig config;
  config.vocab_size = 64;
  config.hidden_size = 32;
  config.num_hidden_layers = 2;
  config.num_heads = 2;
  config.head_dim = 16;
  config.expand_v = 1.0;
  comba::nn::CombaForCausalLM model(config);
  const auto ids = torch::randint(0, 64, {2, 12}, torch::kLong);
  const auto loss = model(ids, comba::nn::LMInputs().labels(ids)).loss;
  loss.backward();
  model->eval();
  const auto out = comba::nn::generate(model, ids, {}, comba::nn::GenerationOptions().max_new_tokens(4));

  // A model folder (config.json + model.safetensors) written and read back.
  const char* tmp = std::getenv("TMPDIR");
  const std::string folder = std::string(tmp ? tmp : "/tmp") + "/use_comba_model";
  comba::io::save_pretrained(model, folder);
  auto loaded = comba::io::load_pretrained(folder);
  const torch::Tensor logits = model(ids).logits;
  const torch::Tensor reloaded = loaded.model(ids).logits;
  const double load_gap = (logits - reloaded).abs().max().item<double>();

  const bool ok = op_gap < 1e-4 && std::isfinite(loss.item<double>()) && out.sequences.size(1) == 16 &&
                  load_gap == 0.0;
  std::cout << "operator chunk vs recurrent max |diff| " << op_gap << ", loss " << loss.item<double>()
            << ", generated " << out.new_tokens.size(1) << " tokens per row, reloaded folder max |diff| "
            << load_gap << "\n"
            << "use_in_your_project: " << (ok ? "OK" : "FAILED") << std::endl;
  return ok ? 0 : 1;
}
