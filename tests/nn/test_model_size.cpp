// Model sizes from the config (issue 15, case 6): count_parameters agrees with the modules'
// own parameters over configs that switch every optional part; configs whose products
// overflow int64 are refused by validate() naming the keys; a model the machine cannot
// hold is refused before anything is allocated, with the bytes needed, the bytes there
// are and the keys of its largest part (instead of std::bad_alloc or an allocator abort).
#include "nn_test_utils.h"

#include "comba/nn/model_size.h"
#include "support/expect_error.h"
#include "support/require.h"

#include <unistd.h>

#include <string>

using namespace comba::nn;
using namespace comba::nn::testing;
// nn's checks are TORCH_CHECKs: their errors are c10::Errors.
const auto expect_error_mentioning = comba::testing::expect_error_mentioning<c10::Error>;

namespace {

int64_t numel_of(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

int64_t physical_memory() { return static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE); }

}  // namespace

TEST(ModelSize, CountsMatchTheModules) {
  std::vector<CombaConfig> configs;
  configs.push_back(tiny_config());
  auto gva = tiny_config();  // GVA, expand_v 2, the MLP width from hidden_ratio
  gva.num_v_heads = 4;
  gva.expand_v = 2.0;
  gva.intermediate_size = 0;
  gva.hidden_ratio = 4;
  configs.push_back(gva);
  auto bare = comba::testing::tiny_bare_config();
  bare.num_hidden_layers = 3;
  configs.push_back(bare);
  auto biased = tiny_config();  // conv bias, odd sizes
  biased.conv_bias = true;
  biased.conv_size = 3;
  biased.vocab_size = 37;
  biased.hidden_size = 24;
  biased.intermediate_size = 40;
  biased.num_heads = 3;
  biased.head_dim = 8;
  biased.num_v_heads = 6;
  biased.expand_v = 1.5;
  configs.push_back(biased);

  for (const auto& config : configs) {
    const ParameterCount count = count_parameters(config);
    CombaForCausalLM lm(config);
    EXPECT_EQ(count.total(), numel_of(*lm));
    EXPECT_EQ(count.model(), numel_of(*lm->model));
    EXPECT_EQ(count.embeddings, config.vocab_size * config.hidden_size);
    EXPECT_EQ(count.lm_head, config.tie_word_embeddings ? 0 : config.vocab_size * config.hidden_size);
    EXPECT_EQ(count.per_layer, numel_of(*lm->model->layers[0]));
    EXPECT_EQ(count.layers, config.num_hidden_layers * count.per_layer);
  }
}

TEST(ModelSize, OverflowingProductsAreConfigErrors) {
  // fla's defaults with hidden_size 1e9: each MLP has 3 x 1e9 x 2667e6 = 8e18 parameters,
  // 21 of them overflow int64.
  CombaConfig config;
  config.hidden_size = 1'000'000'000;
  expect_error_mentioning([&] { config.validate(); }, "num_hidden_layers x the parameters of one layer");
  expect_error_mentioning([&] { CombaForCausalLM lm(config); }, "overflows int64");

  auto wide = tiny_config();
  wide.vocab_size = int64_t{1} << 40;
  wide.hidden_size = int64_t{1} << 30;
  expect_error_mentioning([&] { wide.validate(); }, "vocab_size x hidden_size = 1099511627776 x 1073741824");

  auto heads = tiny_config();
  heads.num_heads = int64_t{1} << 40;
  heads.head_dim = int64_t{1} << 30;
  expect_error_mentioning([&] { heads.validate(); }, "num_heads x head_dim");

  auto ratio = tiny_config();  // a derived size beyond int64 before any product
  ratio.intermediate_size = 0;
  ratio.hidden_ratio = 1e300;
  expect_error_mentioning([&] { ratio.validate(); }, "hidden_size * hidden_ratio * 2/3 <=");
  auto expand = tiny_config();
  expand.expand_v = 1e300;
  expect_error_mentioning([&] { expand.validate(); }, "head_dim * expand_v <=");
}

TEST(ModelSize, TooLargeForThisMachineNamesTheBytesAndTheKeys) {
  // hidden_size 1e9 on a small config: 845e9 parameters, the MLPs (2 x 3 x 1e9 x 64) lead.
  auto config = tiny_config();
  config.hidden_size = 1'000'000'000;
  const ParameterCount count = count_parameters(config);
  // By hand: 2 x 64 x 1e9 (embeddings, lm_head) + 1e9 (norm) + per layer: hidden x (q, k:
  // 2 x 32; v, g, o: 3 x 32; a, b: 2 x 2) + 4 x 2 (A_log, dt_bias, D, decay) + 96 x 4
  // (convs) + 16 (o_norm) + 3 x 1e9 x 64 (MLP) + 2 x 1e9 (norms).
  const int64_t per_layer = int64_t{1'000'000'000} * (64 + 96 + 4) + 8 + 384 + 16 + int64_t{192'000'000'000} +
                            int64_t{2'000'000'000};
  EXPECT_EQ(count.per_layer, per_layer);
  const int64_t total = int64_t{128'000'000'000} + int64_t{1'000'000'000} + 2 * per_layer;
  ASSERT_EQ(count.total(), total);
  ASSERT_GT(4 * total, physical_memory()) << "this machine could hold the test's model";
  const std::string needed = "the parameters (" + std::to_string(total) + " x 4 bytes, Float) need " +
                             std::to_string(4 * total) + " bytes";
  expect_error_mentioning([&] { CombaForCausalLM lm(config); }, "CombaForCausalLM: " + needed);
  expect_error_mentioning([&] { CombaForCausalLM lm(config); },
                          "but this machine has " + std::to_string(physical_memory()) + " bytes");
  expect_error_mentioning([&] { CombaForCausalLM lm(config); }, "the largest part is MLPs");

  // vocab_size 1e12 (generate --vocab 1000000000000): the embeddings lead; CombaModel
  // alone has no lm_head.
  auto vocab = tiny_config();
  vocab.vocab_size = 1'000'000'000'000;
  expect_error_mentioning([&] { CombaForCausalLM lm(vocab); },
                          "embeddings + lm_head = 2 x vocab_size x hidden_size = 2 x 1000000000000 x 32");
  expect_error_mentioning([&] { CombaModel m(vocab); },
                          "the largest part is embeddings = vocab_size x hidden_size = 1000000000000 x 32");
  vocab.tie_word_embeddings = true;
  expect_error_mentioning([&] { CombaForCausalLM lm(vocab); }, "embeddings = vocab_size x hidden_size");
}

TEST(ModelSize, MemoryCheckComparesWithTheDevice) {
  const int64_t available = device_memory_bytes(torch::kCPU);
  EXPECT_EQ(available, physical_memory());
  check_memory_fits(available, torch::kCPU, "all of it");
  expect_error_mentioning([&] { check_memory_fits(available + 1, torch::kCPU, "one byte more", "why"); },
                          "one byte more need " + std::to_string(available + 1) + " bytes");
  expect_error_mentioning([&] { check_memory_fits(available + 1, torch::kCPU, "one byte more", "why"); }, "; why");
  expect_error_mentioning([] { checked_mul(int64_t{1} << 32, int64_t{1} << 31, "a x b"); }, "a x b = ");
  EXPECT_EQ(checked_mul(int64_t{1} << 32, int64_t{1} << 30, "a x b"), int64_t{1} << 62);
  expect_error_mentioning([] { checked_add(INT64_MAX, 1, "a + b"); }, "overflows int64");
}

TEST(ModelSize, CudaMemoryIsTheFreeMemory) {
  COMBA_SKIP_WITHOUT_CUDA();
  const torch::Device cuda(torch::kCUDA, 0);
  EXPECT_GT(device_memory_bytes(cuda), 0);
  // Memory held by a tensor is not free; once released to the caching allocator it is.
  // Other processes on the GPU (ctest runs GPU tests in parallel) move the free memory
  // between readings far apart, so only the two readings around the release, microseconds
  // apart, are compared.
  int64_t while_held = 0;
  {
    const auto held = torch::empty({int64_t{1} << 30}, torch::TensorOptions(torch::kByte).device(cuda));
    while_held = device_memory_bytes(cuda);
  }
  const int64_t released = device_memory_bytes(cuda);
  EXPECT_GE(released - while_held, (int64_t{1} << 30) - (int64_t{64} << 20));
  auto vocab = tiny_config();
  vocab.vocab_size = 1'000'000'000'000;
  expect_error_mentioning([&] { check_parameters_fit(vocab, torch::kBFloat16, cuda); },
                          "x 2 bytes, BFloat16) need " + std::to_string(2 * count_parameters(vocab).total()) +
                              " bytes");
  expect_error_mentioning([&] { check_parameters_fit(vocab, torch::kBFloat16, cuda); }, "but cuda:0 has ");
}
