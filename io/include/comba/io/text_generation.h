// Text in, text out: a loaded model folder's tokenizer around nn::generate, for
// examples/generate --model DIR --prompt "..." and for evaluation scripts.
#pragma once
#include <string>
#include <vector>

#include "comba/io/pretrained.h"
#include "comba/nn/generate.h"

namespace comba::io {

struct TextGeneration {
  std::string text;             // the new tokens decoded (the prompt is not repeated)
  std::vector<int> prompt_ids;  // what the model saw, BOS included when added
  std::vector<int> new_ids;     // generated ids, EOS included when generation stopped on it
};

// Encodes `prompt` (with BOS first when the config has bos_token_id >= 0 and add_bos),
// generates on the model's device, decodes. options.eos_token_id() < 0 takes the config's
// eos_token_id. Throws std::runtime_error naming the folder when it has no tokenizer.
TextGeneration generate_text(const Pretrained& pretrained, const std::string& prompt,
                             nn::GenerationOptions options = {}, bool add_bos = true);

}  // namespace comba::io
