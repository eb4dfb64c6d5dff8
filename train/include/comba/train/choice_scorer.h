// Multiple-choice scoring (the form lm-eval tasks reduce to): each choice is scored by the
// summed log-likelihood of its tokens given the context; the prediction is the best choice,
// raw or divided by the choice's token count (length-normalised).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "comba/nn/causal_lm.h"

namespace comba::train {

struct ChoiceItem {
  std::vector<int64_t> context;               // at least one token
  std::vector<std::vector<int64_t>> choices;  // each at least one token
  int64_t label = 0;                          // index of the right choice
};

// sum_t log p(choice[t] | context, choice[:t]) for each choice, in fp64 (model in eval mode).
std::vector<double> choice_log_likelihoods(nn::CombaForCausalLM& model, const ChoiceItem& item,
                                           const torch::Device& device);

// Reads a JSONL file of {"context": [ids] or "text", "choices": [[ids] or "text", ...],
// "label": i}. Text goes through `encode` (null: text is refused, naming the line); ids must
// be < vocab_size. Errors name `key`, the file and the line.
using EncodeFn = std::function<std::vector<int64_t>(const std::string&)>;
std::vector<ChoiceItem> read_choices(const std::string& path, const EncodeFn& encode, int64_t vocab_size,
                                     const std::string& key);

struct ChoiceResult {
  int64_t items = 0;
  double accuracy = 0;       // share of items whose highest-likelihood choice is the label
  double accuracy_norm = 0;  // the same with likelihoods divided by the choice's token count
};
ChoiceResult score_choices(nn::CombaForCausalLM& model, const std::vector<ChoiceItem>& items,
                           const torch::Device& device);

}  // namespace comba::train
