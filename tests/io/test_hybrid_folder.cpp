// Hybrid model folders (fla's `attn`, issue 20): config.json's attn read with fla's
// defaults in both of fla's forms (one object, a list), written back in the same form with
// each spec's unknown keys; errors naming the key path; save_pretrained / load_pretrained
// of a hybrid model (fla's parameter names, identical tensors and logits); the
// architecture check naming the layer whose kind differs.
#include "comba/io/pretrained.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "support/expect_error.h"
#include "support/file_bytes.h"
#include "support/scratch_dir.h"
#include "support/tiny_config.h"

namespace comba::io {
namespace {

using ::testing::HasSubstr;
using comba::testing::error_of;
using comba::testing::tiny_hybrid_config;
using testing::TempDir;

// fla's base keys for a 4-layer tiny model with `attn` spliced in.
std::string config_with_attn(const std::string& attn) {
  return R"({"model_type": "comba", "hidden_size": 32, "num_hidden_layers": 4, "num_heads": 2,
    "head_dim": 16, "expand_v": 1, "intermediate_size": 64, "vocab_size": 64, "attn": )" +
         attn + "}";
}

TEST(HybridConfigJson, OneObjectWithFlaDefaultsAndUnknownKeys) {
  const auto file = config_from_json(config_with_attn(R"({"layers": [1, 3], "num_heads": 4, "qk_norm": false,
                                                          "note": {"why": [1, 2]}})"));
  ASSERT_EQ(file.model.attn.size(), 1u);
  EXPECT_FALSE(file.model.attn_is_list);
  const auto& spec = file.model.attn[0];
  EXPECT_EQ(spec.layers, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(spec.num_heads, 4);
  EXPECT_EQ(spec.kv_heads(), 4);  // fla: missing = num_heads
  EXPECT_FALSE(spec.qkv_bias);
  EXPECT_EQ(spec.window_size, 0);
  EXPECT_EQ(spec.rope_theta, 10000.0);
  EXPECT_TRUE(file.extra.empty()) << file.extra.dump();  // attn's unknown keys stay in attn
  ASSERT_EQ(file.attn_extra.size(), 1u);
  EXPECT_EQ(file.attn_extra[0].at("qk_norm"), false);

  const auto json = config_to_json(file);
  const auto& attn = json.at("attn");
  ASSERT_TRUE(attn.is_object()) << attn.dump();
  EXPECT_EQ(attn.at("layers"), nlohmann::ordered_json({1, 3}));
  EXPECT_EQ(attn.at("num_kv_heads"), 4);  // written resolved, as fla's parsed config holds it
  EXPECT_EQ(attn.at("qkv_bias"), false);
  EXPECT_TRUE(attn.at("window_size").is_null());
  EXPECT_EQ(attn.at("rope_theta"), 10000.0);
  EXPECT_EQ(attn.at("note").at("why")[1], 2);
  EXPECT_EQ(attn.at("qk_norm"), false);
  const auto again = config_from_json(json.dump());
  EXPECT_EQ(again.model, file.model);
  EXPECT_EQ(config_to_json(again), json);
}

TEST(HybridConfigJson, ListFormRoundTrips) {
  const auto file = config_from_json(config_with_attn(R"([
      {"layers": [1], "num_heads": 4, "num_kv_heads": 2, "qkv_bias": true, "window_size": null},
      {"layers": [3], "num_heads": 2, "num_kv_heads": null, "window_size": 5, "rope_theta": 500, "extra_key": "x"}])"));
  EXPECT_TRUE(file.model.attn_is_list);
  EXPECT_EQ(file.model, tiny_hybrid_config());
  ASSERT_EQ(file.attn_extra.size(), 2u);
  EXPECT_TRUE(file.attn_extra[0].empty());
  EXPECT_EQ(file.attn_extra[1].at("extra_key"), "x");
  const auto json = config_to_json(file);
  ASSERT_TRUE(json.at("attn").is_array());
  EXPECT_EQ(json.at("attn")[0].at("window_size"), nullptr);
  EXPECT_EQ(json.at("attn")[1].at("window_size"), 5);
  EXPECT_EQ(json.at("attn")[1].at("num_kv_heads"), 2);
  EXPECT_EQ(json.at("attn")[1].at("extra_key"), "x");
  const auto again = config_from_json(json.dump());
  EXPECT_EQ(again.model, file.model);
  EXPECT_EQ(again.attn_extra, file.attn_extra);
  EXPECT_EQ(config_to_json(again), json);

  // A pure model writes attn null, as fla does; null and an absent key read as no attn.
  ModelConfigFile pure{comba::testing::tiny_config()};
  EXPECT_TRUE(config_to_json(pure).at("attn").is_null());
  EXPECT_FALSE(config_from_json(config_with_attn("null")).model.is_hybrid());
}

TEST(HybridConfigJson, ErrorsNameTheKeyPath) {
  const auto error = [](const std::string& attn) { return error_of([&] { config_from_json(config_with_attn(attn)); }); };
  EXPECT_THAT(error(R"("yes")"), HasSubstr("config.json: key \"attn\": expected null, an object or a list"));
  EXPECT_THAT(error(R"([{"layers": [1], "num_heads": 4}, 7])"), HasSubstr("key \"attn\"[1]: expected an object, got 7"));
  EXPECT_THAT(error(R"([{"num_heads": 4}])"), HasSubstr("key \"attn\"[0].layers: required"));
  EXPECT_THAT(error(R"({"layers": [1]})"), HasSubstr("key \"attn\".num_heads: required"));
  EXPECT_THAT(error(R"({"layers": [1, 1.5], "num_heads": 4})"),
              HasSubstr("key \"attn\".layers[1]: expected an integer, got 1.5"));
  EXPECT_THAT(error(R"([{"layers": [1], "num_heads": 4}, {"layers": [3], "num_heads": 0}])"),
              HasSubstr("key \"attn\"[1].num_heads: expected a positive integer, got 0"));
  EXPECT_THAT(error(R"({"layers": [1], "num_heads": 4, "num_kv_heads": true})"),
              HasSubstr("key \"attn\".num_kv_heads: expected a positive integer, got true"));
  EXPECT_THAT(error(R"({"layers": [1], "num_heads": 4, "qkv_bias": 1})"),
              HasSubstr("key \"attn\".qkv_bias: expected true or false"));
  EXPECT_THAT(error(R"({"layers": [1], "num_heads": 4, "window_size": 0})"),
              HasSubstr("key \"attn\".window_size: expected a positive integer, got 0"));
  EXPECT_THAT(error(R"({"layers": [1], "num_heads": 4, "rope_theta": -1})"),
              HasSubstr("key \"attn\".rope_theta: expected a positive finite number"));
  // The checks that span keys (validate()) name the path the same way.
  EXPECT_THAT(error(R"([{"layers": [1], "num_heads": 4}, {"layers": [7], "num_heads": 2}])"),
              HasSubstr("config.json: key \"attn\"[1].layers: layer 7 out of range [0, 4)"));
  EXPECT_THAT(error(R"([{"layers": [1], "num_heads": 4}, {"layers": [3, 1], "num_heads": 2}])"),
              HasSubstr("key \"attn\"[1].layers: layer 1 is already assigned by attn[0]"));
  EXPECT_THAT(error(R"({"layers": [1], "num_heads": 4, "num_kv_heads": 3})"),
              HasSubstr("key \"attn\".num_kv_heads: expected a divisor of num_heads = 4, got 3"));
}

TEST(HybridFolder, SaveLoadRoundTripsNamesTensorsAndLogits) {
  TempDir dir;
  torch::manual_seed(7);
  nn::CombaForCausalLM model(tiny_hybrid_config());
  model->eval();
  const nlohmann::ordered_json attn_extra = nlohmann::ordered_json::array({{{"qk_norm", false}}, nlohmann::ordered_json::object()});
  save_pretrained(model, dir.path(), {}, {{"transformers_version", "4.53.0"}}, attn_extra);

  const SafetensorsFile file(dir.file("model.safetensors"));
  EXPECT_EQ(file.tensors().size(), model->named_parameters().size());
  for (const char* name : {"model.layers.1.attn.q_proj.weight", "model.layers.1.attn.q_proj.bias",
                           "model.layers.1.attn.k_proj.weight", "model.layers.1.attn.v_proj.bias",
                           "model.layers.1.attn.o_proj.weight", "model.layers.3.attn.q_proj.weight",
                           "model.layers.0.attn.A_log", "model.layers.2.attn.q_conv1d.weight"}) {
    EXPECT_NE(file.find(name), nullptr) << name;
  }
  const auto json = nlohmann::json::parse(testing::read_bytes(dir.file("config.json")));
  ASSERT_TRUE(json.at("attn").is_array());
  EXPECT_EQ(json.at("attn")[0].at("qk_norm"), false);

  auto loaded = load_pretrained(dir.path());
  EXPECT_EQ(loaded.config.model, model->config());
  EXPECT_EQ(loaded.config.attn_extra, attn_extra);
  for (const auto& item : model->named_parameters()) {
    const auto* other = loaded.model->named_parameters().find(item.key());
    ASSERT_NE(other, nullptr) << item.key();
    EXPECT_TRUE(torch::equal(*other, item.value())) << item.key();
  }
  torch::NoGradGuard no_grad;
  const auto ids = torch::randint(0, 64, {2, 12}, torch::kLong);
  EXPECT_TRUE(torch::equal(model(ids).logits, loaded.model(ids).logits));
}

TEST(HybridFolder, ArchitectureCheckNamesTheLayer) {
  const nn::CombaConfig hybrid = tiny_hybrid_config();
  EXPECT_TRUE(architecture_differences(hybrid, hybrid).empty());
  nn::CombaConfig pure = hybrid;
  pure.attn.clear();
  const auto differ = architecture_differences(pure, hybrid);
  ASSERT_EQ(differ.size(), 2u);
  EXPECT_EQ(differ[0], "attn: layer 1 is attention (num_heads 4, num_kv_heads 2, qkv_bias true) in the folder, "
                       "a Comba layer in the model");
  // window_size and rope_theta change the function, not the tensors: the weights load.
  nn::CombaConfig other_window = hybrid;
  other_window.attn[1].window_size = 0;
  other_window.attn[1].rope_theta = 10000.0;
  EXPECT_TRUE(architecture_differences(hybrid, other_window).empty());
  // The same layers as one spec each or grouped differently are the same architecture.
  nn::CombaConfig regrouped = hybrid;
  regrouped.attn[0].num_heads = 2;
  regrouped.attn[0].num_kv_heads = 2;
  regrouped.attn[0].qkv_bias = false;
  regrouped.attn[0].layers = {1, 3};
  regrouped.attn.resize(1);
  nn::CombaConfig same_heads = hybrid;
  same_heads.attn[0] = regrouped.attn[0];
  same_heads.attn[0].layers = {1};
  EXPECT_TRUE(architecture_differences(regrouped, same_heads).empty());

  TempDir dir;
  nn::CombaForCausalLM saved(hybrid);
  save_pretrained(saved, dir.path());
  nn::CombaForCausalLM other(pure);
  EXPECT_THAT(error_of([&] { load_weights(other, dir.path()); }), HasSubstr("attn: layer 3 is attention"));
}

}  // namespace
}  // namespace comba::io
