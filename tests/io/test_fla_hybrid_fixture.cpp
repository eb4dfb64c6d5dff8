// A hybrid model saved by fla itself (tests/data/fla_hybrid, made by
// tests/io/make_fla_hybrid_fixture.py: fla 0.6.0's own model code and Triton kernels, run in
// fp32 through Triton's interpreter on a CPU, its Attention layers with a mask-and-softmax
// stand-in for the flash-attn package, which has no wheel) loads here with its unknown keys
// kept and reproduces fla's logits, dense and packed: layer 1 is windowed grouped-query
// attention with qkv bias and another RoPE base, layer 3 full attention, layers 0 and 2
// Comba.
#include "comba/io/pretrained.h"

#include <gtest/gtest.h>
#include <torch/torch.h>


namespace comba::io {
namespace {

const std::string kFixture = COMBA_FLA_HYBRID_FIXTURE;

TEST(FlaHybridFixture, ConfigKeepsFlaSpelling) {
  const auto config = read_config(kFixture + "/config.json");
  ASSERT_EQ(config.model.attn.size(), 2u);
  EXPECT_TRUE(config.model.attn_is_list);
  const auto& windowed = config.model.attn[0];
  EXPECT_EQ(windowed.layers, std::vector<int64_t>{1});
  EXPECT_EQ(windowed.num_heads, 4);
  EXPECT_EQ(windowed.kv_heads(), 2);
  EXPECT_TRUE(windowed.qkv_bias);
  EXPECT_EQ(windowed.window_size, 16);
  EXPECT_DOUBLE_EQ(windowed.rope_theta, 5000.0);
  const auto& full = config.model.attn[1];
  EXPECT_EQ(full.layers, std::vector<int64_t>{3});
  EXPECT_EQ(full.kv_heads(), 2);
  EXPECT_EQ(full.window_size, 0);
  EXPECT_DOUBLE_EQ(full.rope_theta, 10000.0);
  // Written back, the unknown key of the first spec is still there.
  const auto json = config_to_json(config);
  EXPECT_EQ(json.at("attn").at(0).at("note"), "kept");
  EXPECT_TRUE(json.at("attn").at(1).at("window_size").is_null());
}

// Both sides computed in fp32 (fla's recurrent kernel, ours the chunk or recurrent path in
// another order of summation): agreement to the recurrent-path tolerance, and the same
// argmax almost everywhere (near-ties may flip).
void expect_close_to_fla(const torch::Tensor& logits, const torch::Tensor& fla_logits) {
  ASSERT_EQ(logits.sizes(), fla_logits.sizes());
  const double scale = fla_logits.abs().max().item<double>();
  const double max_error = (logits - fla_logits).abs().max().item<double>();
  EXPECT_LT(max_error, 1e-3 * scale) << "max |ours - fla| = " << max_error << " with max |fla| = " << scale;
  const double agree = logits.argmax(-1).eq(fla_logits.argmax(-1)).to(torch::kDouble).mean().item<double>();
  EXPECT_GE(agree, 0.98);
}

TEST(FlaHybridFixture, ReproducesFlaLogits) {
  auto loaded = load_pretrained(kFixture, LoadOptions().load_tokenizer(false));
  const auto expected = load_safetensors(kFixture + "/expected.safetensors");
  torch::NoGradGuard no_grad;
  expect_close_to_fla(loaded.model->forward(expected.at("input_ids")).logits.to(torch::kFloat), expected.at("logits"));
}

TEST(FlaHybridFixture, ReproducesFlaLogitsPacked) {
  auto loaded = load_pretrained(kFixture, LoadOptions().load_tokenizer(false));
  const auto expected = load_safetensors(kFixture + "/expected.safetensors");
  torch::NoGradGuard no_grad;
  const auto logits = loaded.model->forward(expected.at("packed_input_ids"),
                                            nn::LMInputs().cu_seqlens(expected.at("packed_cu_seqlens")))
                          .logits.to(torch::kFloat);
  expect_close_to_fla(logits, expected.at("packed_logits"));
}

}  // namespace
}  // namespace comba::io
