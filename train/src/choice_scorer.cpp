// Multiple-choice scoring (see choice_scorer.h).
#include "comba/train/choice_scorer.h"

#include <torch/torch.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace comba::train {

std::vector<double> choice_log_likelihoods(nn::CombaForCausalLM& model, const ChoiceItem& item,
                                           const torch::Device& device) {
  if (item.context.empty()) throw std::invalid_argument("context: expected at least one token, got none");
  const torch::NoGradGuard no_grad;
  model->eval();
  const auto n_context = static_cast<int64_t>(item.context.size());
  std::vector<double> out;
  for (const auto& choice : item.choices) {
    if (choice.empty()) throw std::invalid_argument("choices: expected at least one token per choice, got an empty one");
    std::vector<int64_t> ids = item.context;
    ids.insert(ids.end(), choice.begin(), choice.end());
    const auto input = torch::tensor(ids).unsqueeze(0).to(device);
    // Position t predicts t + 1: the choice's tokens are predicted from n_context - 1 on.
    const auto n = static_cast<int64_t>(choice.size());
    const auto logits = model->forward(input).logits[0].slice(0, n_context - 1, n_context - 1 + n);
    const auto logp = torch::log_softmax(logits.to(torch::kDouble), -1);
    const auto wanted = torch::tensor(choice).to(device).unsqueeze(1);
    out.push_back(logp.gather(1, wanted).sum().item<double>());
  }
  return out;
}

std::vector<ChoiceItem> read_choices(const std::string& path, const EncodeFn& encode, int64_t vocab_size,
                                     const std::string& key) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(key + ": " + path + ": cannot be opened");
  std::vector<ChoiceItem> items;
  int64_t number = 0;
  for (std::string text; std::getline(in, text);) {
    ++number;
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = key + ": " + path + " line " + std::to_string(number) + ": ";
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const std::exception& e) {
      throw std::runtime_error(where + "not JSON (" + e.what() + ")");
    }
    const auto tokens = [&](const nlohmann::json& v, const std::string& what) {
      std::vector<int64_t> ids;
      if (v.is_string()) {
        if (!encode) throw std::runtime_error(where + what + " is text, which needs a tokenizer (give token ids)");
        ids = encode(v.get<std::string>());
      } else if (v.is_array()) {
        for (const auto& t : v) {
          if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= vocab_size) {
            throw std::runtime_error(where + what + ": expected token ids (integers in [0, " +
                                     std::to_string(vocab_size) + "), the model's vocabulary), got " + t.dump());
          }
          ids.push_back(t.get<int64_t>());
        }
      } else {
        throw std::runtime_error(where + what + ": expected a list of token ids or a string, got " + v.dump());
      }
      if (ids.empty()) throw std::runtime_error(where + what + ": expected at least one token, got none");
      return ids;
    };
    if (!j.is_object() || !j.contains("context") || !j.contains("choices") || !j.contains("label")) {
      throw std::runtime_error(where + "expected an object with \"context\", \"choices\" and \"label\"");
    }
    ChoiceItem item;
    item.context = tokens(j["context"], "context");
    if (!j["choices"].is_array() || j["choices"].empty()) {
      throw std::runtime_error(where + "choices: expected a non-empty list, got " + j["choices"].dump());
    }
    for (size_t c = 0; c < j["choices"].size(); ++c) {
      item.choices.push_back(tokens(j["choices"][c], "choices[" + std::to_string(c) + "]"));
    }
    const auto& label = j["label"];
    if (!label.is_number_integer() || label.get<int64_t>() < 0 ||
        label.get<int64_t>() >= static_cast<int64_t>(item.choices.size())) {
      throw std::runtime_error(where + "label: expected an index in [0, " + std::to_string(item.choices.size()) +
                               "), got " + label.dump());
    }
    item.label = label.get<int64_t>();
    items.push_back(std::move(item));
  }
  if (items.empty()) throw std::runtime_error(key + ": " + path + ": no items");
  return items;
}

ChoiceResult score_choices(nn::CombaForCausalLM& model, const std::vector<ChoiceItem>& items,
                           const torch::Device& device) {
  ChoiceResult r;
  int64_t right = 0, right_norm = 0;
  for (const auto& item : items) {
    const std::vector<double> ll = choice_log_likelihoods(model, item, device);
    if (ll.empty()) continue;
    size_t best = 0, best_norm = 0;
    for (size_t c = 1; c < ll.size(); ++c) {
      if (ll[c] > ll[best]) best = c;
      const auto len = [&](size_t i) { return static_cast<double>(item.choices[i].size()); };
      if (ll[c] / len(c) > ll[best_norm] / len(best_norm)) best_norm = c;
    }
    right += static_cast<int64_t>(best) == item.label;
    right_norm += static_cast<int64_t>(best_norm) == item.label;
    ++r.items;
  }
  const double n = static_cast<double>(std::max<int64_t>(1, r.items));
  r.accuracy = static_cast<double>(right) / n;
  r.accuracy_norm = static_cast<double>(right_norm) / n;
  return r;
}

}  // namespace comba::train
