// model.attn in the trainer's YAML: fla's `attn` (hybrid models, nn/config.h AttentionSpec)
// as a mapping or a list of mappings with fla's keys and defaults. Kept apart from the
// scalar schema because it is the one structured model key.
#pragma once
#include <string>
#include <vector>

#include "comba/nn/config.h"

namespace YAML {
class Node;
}

namespace comba::train {

// Reads `node` (null, one mapping or a list of mappings) into model.attn and
// model.attn_is_list; returns one message per problem, naming the key path
// (`<path>.window_size` for one mapping, `<path>[i].window_size` in a list). Range,
// duplicate and divisibility checks are CombaConfig::validate()'s.
std::vector<std::string> read_attn_yaml(const YAML::Node& node, const std::string& path, nn::CombaConfig& model);

// model.attn as one line of YAML flow style that read_attn_yaml reads back: null, {...} or
// [{...}, ...], every key written (num_kv_heads resolved, window_size 0 as null).
std::string attn_to_yaml(const nn::CombaConfig& model);

}  // namespace comba::train
