// generate_text (see text_generation.h).
#include "comba/io/text_generation.h"

#include <torch/torch.h>

#include <stdexcept>

namespace comba::io {

TextGeneration generate_text(const Pretrained& pretrained, const std::string& prompt, nn::GenerationOptions options,
                             bool add_bos) {
  if (!pretrained.tokenizer) {
    throw std::runtime_error(std::string("generate_text: the model folder has no ") + kTokenizerFile +
                             (Tokenizer::available() ? "" : " support (" + Tokenizer::unavailable_reason() + ")"));
  }
  const auto& config = pretrained.config.model;
  TextGeneration out;
  if (add_bos && config.bos_token_id >= 0) out.prompt_ids.push_back(static_cast<int>(config.bos_token_id));
  const auto body = pretrained.tokenizer->encode(prompt);
  out.prompt_ids.insert(out.prompt_ids.end(), body.begin(), body.end());
  if (out.prompt_ids.empty()) throw std::invalid_argument("generate_text: empty prompt and no BOS token to start from");
  if (options.eos_token_id() < 0) options.eos_token_id(config.eos_token_id);

  const auto device = pretrained.model->parameters().front().device();
  std::vector<int64_t> ids(out.prompt_ids.begin(), out.prompt_ids.end());
  const auto input = torch::tensor(ids, torch::kLong).unsqueeze(0).to(device);
  auto model = pretrained.model;  // holder copy: same module
  const auto result = nn::generate(model, input, {}, options);
  const auto tokens = result.new_tokens[0].cpu();
  std::vector<int> text_ids;
  for (int64_t i = 0; i < tokens.size(0); ++i) {
    const int id = static_cast<int>(tokens[i].item<int64_t>());
    out.new_ids.push_back(id);
    if (id == options.eos_token_id()) break;  // what follows EOS is padding
    text_ids.push_back(id);
  }
  out.text = pretrained.tokenizer->decode(text_ids);
  return out;
}

}  // namespace comba::io
