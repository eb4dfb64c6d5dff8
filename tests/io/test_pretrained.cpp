// Model folders: config.json mapping (defaults, nulls, unknown keys kept), save -> load
// round trips (identical tensors and logits; single file and shards load the same; tied
// embeddings written as fla writes them; bf16), malformed folders rejected with messages,
// and interop with Python (fla_reference.py): an fla-style folder written by
// safetensors.torch loads here and gives the logits of an independent PyTorch reference
// of SPEC section 3; a folder exported here loads in Python and gives the same logits.
#include "comba/core/file_util.h"
#include "comba/io/pretrained.h"
#include "comba/io/text_generation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <functional>
#include <set>

#include "support/file_bytes.h"
#include "support/scratch_dir.h"
#include "io/text_gen.h"
#include "support/config_variants.h"
#include "support/expect_error.h"
#include "support/tiny_config.h"

namespace comba::io {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

using comba::testing::tiny_gva_config;  // the folders' model: grouped value heads, odd sizes

nn::CombaForCausalLM tiny_model(bool tied = false, uint64_t seed = 3) {
  torch::manual_seed(seed);
  nn::CombaForCausalLM model(tiny_gva_config(tied));
  model->eval();
  return model;
}

torch::Tensor ids(int64_t batch = 2, int64_t steps = 70, int64_t vocab = 61) {
  torch::manual_seed(11);
  return torch::randint(0, vocab, {batch, steps}, torch::kLong);
}

torch::Tensor logits(nn::CombaForCausalLM& model, const torch::Tensor& input_ids) {
  const torch::NoGradGuard no_grad;
  return model->forward(input_ids).logits;
}

using comba::testing::error_of;

void expect_same_parameters(const nn::CombaForCausalLM& a, const nn::CombaForCausalLM& b) {
  const auto pa = a->named_parameters();
  const auto pb = b->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& item : pa) {
    const auto* other = pb.find(item.key());
    ASSERT_NE(other, nullptr) << item.key();
    EXPECT_EQ(other->scalar_type(), item.value().scalar_type()) << item.key();
    EXPECT_TRUE(torch::equal(*other, item.value())) << item.key();
  }
}

// ---- config.json -------------------------------------------------------------------------

TEST(ConfigJson, MissingKeysTakeFlaDefaults) {
  const auto file = config_from_json(R"({"model_type": "comba"})");
  const nn::CombaConfig defaults;
  EXPECT_EQ(file.model.hidden_size, 2048);
  EXPECT_EQ(file.model.num_hidden_layers, 21);
  EXPECT_EQ(file.model.num_heads, 6);
  EXPECT_EQ(file.model.head_dim, 256);
  EXPECT_EQ(file.model.expand_v, 2.0);
  EXPECT_EQ(file.model.vocab_size, 32000);
  EXPECT_EQ(file.model.norm_eps, 1e-6);
  EXPECT_TRUE(file.model.use_output_gate);
  EXPECT_FALSE(file.model.tie_word_embeddings);
  EXPECT_EQ(file.model.bos_token_id, 1);
  EXPECT_EQ(file.model.eos_token_id, 2);
  EXPECT_EQ(file.model.num_v_heads, defaults.num_v_heads);
  EXPECT_TRUE(file.extra.empty());
}

TEST(ConfigJson, FlaKeysNullsAndUnknownKeysSurviveARoundTrip) {
  const std::string text = R"({
    "model_type": "comba", "architectures": ["CombaForCausalLM"], "hidden_size": 64,
    "num_hidden_layers": 3, "num_heads": 2, "head_dim": 16, "num_v_heads": null, "expand_v": 2,
    "use_gate": false, "use_short_conv": true, "conv_size": 3, "use_output_correction": false,
    "use_inner_decay": true, "correction_factor": 0.5, "hidden_ratio": 3, "intermediate_size": null,
    "norm_eps": 1e-5, "vocab_size": 100, "tie_word_embeddings": true, "pad_token_id": null,
    "bos_token_id": 1, "eos_token_id": 2, "fuse_norm": true, "transformers_version": "4.53.0",
    "rope_scaling": {"type": "none", "factor": [1, 2]}, "torch_dtype": "bfloat16"})";
  const auto file = config_from_json(text);
  EXPECT_EQ(file.model.hidden_size, 64);
  EXPECT_EQ(file.model.num_v_heads, 0);
  EXPECT_EQ(file.model.value_heads(), 2);
  EXPECT_FALSE(file.model.use_output_gate);
  EXPECT_FALSE(file.model.use_output_correction);
  EXPECT_EQ(file.model.correction_factor, 0.5);
  EXPECT_EQ(file.model.conv_size, 3);
  EXPECT_EQ(file.model.intermediate_size, 0);
  EXPECT_EQ(file.model.mlp_intermediate_size(), 256);  // 256-rounded int(64 * 3 * 2 / 3)
  EXPECT_EQ(file.model.pad_token_id, -1);
  EXPECT_TRUE(file.model.tie_word_embeddings);
  ASSERT_EQ(file.extra.size(), 3u);
  EXPECT_EQ(file.extra.at("fuse_norm"), true);
  EXPECT_EQ(file.extra.at("rope_scaling").at("factor")[1], 2);

  const auto json = config_to_json(file, "float32");
  EXPECT_EQ(json.at("model_type"), "comba");
  EXPECT_EQ(json.at("architectures")[0], "CombaForCausalLM");
  EXPECT_TRUE(json.at("num_v_heads").is_null());
  EXPECT_TRUE(json.at("intermediate_size").is_null());
  EXPECT_TRUE(json.at("pad_token_id").is_null());
  EXPECT_EQ(json.at("use_gate"), false);
  EXPECT_EQ(json.at("use_output_gate"), false);
  EXPECT_TRUE(json.at("expand_v").is_number_integer());
  EXPECT_EQ(json.at("torch_dtype"), "float32");
  EXPECT_EQ(json.at("transformers_version"), "4.53.0");
  EXPECT_EQ(json.at("rope_scaling"), file.extra.at("rope_scaling"));
  const auto again = config_from_json(json.dump());
  EXPECT_EQ(again.extra, file.extra);
  EXPECT_EQ(config_to_json(again, "float32"), json);
}

TEST(ConfigJson, BadConfigsNameTheKey) {
  EXPECT_THAT(error_of([] { config_from_json("{\"hidden_size\": 64,"); }), HasSubstr("config.json: bad JSON"));
  EXPECT_THAT(error_of([] { config_from_json(R"({"hidden_size": "64"})"); }),
              HasSubstr("config.json: key \"hidden_size\": expected an integer, got \"64\""));
  EXPECT_THAT(error_of([] { config_from_json(R"({"model_type": "llama"})"); }),
              HasSubstr("key \"model_type\": expected \"comba\", got \"llama\""));
  EXPECT_THAT(error_of([] { config_from_json(R"({"attn": 3})"); }),
              HasSubstr("key \"attn\": expected null, an object or a list of objects, got 3"));
  EXPECT_THAT(error_of([] { config_from_json(R"({"use_gate": true, "use_output_gate": false})"); }),
              HasSubstr("disagree"));
  EXPECT_THAT(error_of([] { config_from_json(R"({"num_heads": 4, "num_v_heads": 6})"); }),
              HasSubstr("num_v_heads"));
  EXPECT_THAT(error_of([] { read_config("/nonexistent/config.json"); }),
              HasSubstr("/nonexistent/config.json: cannot open"));
}

// ---- CombaConfig's field list -----------------------------------------------------------

// Every field of the list (nn/config.h) is written under its config.json key and read back.
TEST(ConfigJson, EveryFieldOfTheListRoundTripsUnderItsKey) {
  const nn::CombaConfig base = tiny_gva_config();
  const auto changed = comba::testing::changed_fields(base);
  ASSERT_EQ(changed.size(), comba::testing::config_field_count());
  const auto base_json = config_to_json(ModelConfigFile{base});
  for (const auto& field : changed) {
    SCOPED_TRACE(field.name);
    const auto json = config_to_json(ModelConfigFile{field.config});
    EXPECT_NE(json.at(field.hf_key), base_json.at(field.hf_key));
    const auto back = config_from_json(json.dump());
    EXPECT_TRUE(back.model == field.config);
    EXPECT_TRUE(back.extra.empty()) << back.extra.dump();
  }
}

// A folder whose config differs in a field of role kShape is flagged by that key; other
// fields (init, compute path, token ids, and kFunction ones such as norm_eps) load.
TEST(Pretrained, ArchitectureCheckFlagsEveryShapeField) {
  nn::CombaConfig base = tiny_gva_config();
  base.hidden_size = 384;  // hidden_ratio 4 -> 9 moves the 256-rounded MLP width
  base.intermediate_size = 0;
  ASSERT_TRUE(architecture_differences(base, base).empty());
  for (const auto& field : comba::testing::changed_fields(base)) {
    SCOPED_TRACE(field.name);
    const auto differ = architecture_differences(base, field.config);
    if (field.role == nn::FieldRole::kShape) {
      ASSERT_FALSE(differ.empty());
      // hidden_ratio is compared through the MLP width it gives.
      const std::string key = field.name == "hidden_ratio" ? "intermediate_size" : field.hf_key;
      EXPECT_THAT(differ.front(), ::testing::StartsWith(key + " = "));
    } else {
      EXPECT_TRUE(differ.empty()) << differ.front();
    }
  }
  // Derived sizes compare as what they give: num_v_heads 0 is num_heads.
  nn::CombaConfig spelled = base;
  spelled.num_v_heads = 0;
  nn::CombaConfig implicit = spelled;
  implicit.num_v_heads = implicit.num_heads;
  EXPECT_TRUE(architecture_differences(spelled, implicit).empty());
}

// ---- round trips -------------------------------------------------------------------------

TEST(Pretrained, SaveLoadGivesIdenticalTensorsAndLogits) {
  TempDir dir;
  auto model = tiny_model();
  nlohmann::ordered_json extra = {{"transformers_version", "4.53.0"}, {"fuse_norm", true}};
  save_pretrained(model, dir.path(), {}, extra);
  EXPECT_TRUE(core::path_exists(dir.file("config.json")));
  EXPECT_TRUE(core::path_exists(dir.file("model.safetensors")));
  EXPECT_FALSE(core::path_exists(dir.file("model.safetensors.index.json")));

  auto loaded = load_pretrained(dir.path());
  expect_same_parameters(model, loaded.model);
  EXPECT_EQ(loaded.config.extra.at("transformers_version"), "4.53.0");
  EXPECT_EQ(loaded.tokenizer, nullptr);
  const auto input = ids();
  EXPECT_TRUE(torch::equal(logits(model, input), logits(loaded.model, input)));

  // The file holds exactly the model's parameters under fla's names.
  const SafetensorsFile file(dir.file("model.safetensors"));
  EXPECT_EQ(file.tensors().size(), model->named_parameters().size());
  EXPECT_NE(file.find("model.embeddings.weight"), nullptr);
  EXPECT_NE(file.find("model.layers.1.attn.q_conv1d.weight"), nullptr);
  EXPECT_NE(file.find("lm_head.weight"), nullptr);
  EXPECT_EQ(file.metadata().at("format"), "pt");
  const auto json = nlohmann::json::parse(testing::read_bytes(dir.file("config.json")));
  EXPECT_EQ(json.at("torch_dtype"), "float32");
  EXPECT_EQ(json.at("num_v_heads"), 4);
}

TEST(Pretrained, ShardedAndSingleFileFoldersLoadTheSame) {
  TempDir single, sharded;
  auto model = tiny_model();
  save_pretrained(model, single.path());
  save_pretrained(model, sharded.path(), SaveOptions().max_shard_bytes(8'000));
  EXPECT_FALSE(core::path_exists(sharded.file("model.safetensors")));
  const auto index = nlohmann::json::parse(testing::read_bytes(sharded.file("model.safetensors.index.json")));
  const auto& map = index.at("weight_map");
  EXPECT_EQ(map.size(), model->named_parameters().size());
  std::set<std::string> shards;
  int64_t total = 0;
  for (const auto& [name, shard] : map.items()) shards.insert(shard.get<std::string>());
  for (const auto& p : model->parameters()) total += p.numel() * 4;
  EXPECT_EQ(index.at("metadata").at("total_size"), total);
  ASSERT_GT(shards.size(), 2u);
  const std::string n = std::to_string(shards.size());
  EXPECT_EQ(*shards.begin(), "model-00001-of-" + std::string(5 - n.size(), '0') + n + ".safetensors");
  for (const auto& shard : shards) EXPECT_LE(core::file_size(sharded.file(shard)), 8'000 + 4'096) << shard;

  auto a = load_pretrained(single.path());
  auto b = load_pretrained(sharded.path());
  expect_same_parameters(a.model, b.model);
  const auto input = ids();
  EXPECT_TRUE(torch::equal(logits(a.model, input), logits(b.model, input)));

  // Saving a single file over a sharded folder leaves no stale shards or index behind.
  save_pretrained(model, sharded.path());
  EXPECT_FALSE(core::path_exists(sharded.file("model.safetensors.index.json")));
  EXPECT_FALSE(core::path_exists(sharded.file(*shards.begin())));
  EXPECT_TRUE(core::path_exists(sharded.file("model.safetensors")));
}

TEST(Pretrained, TiedEmbeddingsAreWrittenAsFlaWritesThem) {
  TempDir dir;
  auto model = tiny_model(/*tied=*/true);
  save_pretrained(model, dir.path());
  {
    const SafetensorsFile file(dir.file("model.safetensors"));
    EXPECT_EQ(file.find("lm_head.weight"), nullptr);
    EXPECT_NE(file.find("model.embeddings.weight"), nullptr);
  }
  const auto json = nlohmann::json::parse(testing::read_bytes(dir.file("config.json")));
  EXPECT_EQ(json.at("tie_word_embeddings"), true);
  auto loaded = load_pretrained(dir.path());
  const auto input = ids();
  EXPECT_TRUE(torch::equal(logits(model, input), logits(loaded.model, input)));

  // A tied folder that also stores lm_head.weight (fla's state_dict) loads the same.
  auto tensors = load_safetensors(dir.file("model.safetensors"));
  std::vector<std::pair<std::string, torch::Tensor>> with_head(tensors.begin(), tensors.end());
  with_head.emplace_back("lm_head.weight", tensors.at("model.embeddings.weight"));
  save_safetensors(dir.file("model.safetensors"), with_head);
  auto again = load_pretrained(dir.path());
  EXPECT_TRUE(torch::equal(logits(model, input), logits(again.model, input)));
}

TEST(Pretrained, Bf16FoldersKeepTheirDtypeOrLoadAsFp32) {
  TempDir dir;
  auto model = tiny_model();
  save_pretrained(model, dir.path(), SaveOptions().dtype(torch::kBFloat16));
  const SafetensorsFile file(dir.file("model.safetensors"));
  for (const auto& e : file.tensors()) EXPECT_EQ(e.dtype, Dtype::BF16) << e.name;
  EXPECT_EQ(nlohmann::json::parse(testing::read_bytes(dir.file("config.json"))).at("torch_dtype"), "bfloat16");

  auto as_stored = load_pretrained(dir.path(), LoadOptions().dtype(std::nullopt));
  auto as_fp32 = load_pretrained(dir.path());
  for (const auto& item : model->named_parameters()) {
    const auto expected = item.value().to(torch::kBFloat16);
    EXPECT_TRUE(torch::equal(as_stored.model->named_parameters()[item.key()], expected)) << item.key();
    EXPECT_EQ(as_fp32.model->named_parameters()[item.key()].scalar_type(), torch::kFloat) << item.key();
    EXPECT_TRUE(torch::equal(as_fp32.model->named_parameters()[item.key()], expected.to(torch::kFloat)));
  }
}

TEST(Pretrained, LoadWeightsIntoAnExistingModel) {
  TempDir dir;
  auto source = tiny_model(false, 5);
  save_pretrained(source, dir.path());
  auto target = tiny_model(false, 6);
  load_weights(target, dir.path());
  expect_same_parameters(source, target);

  // A model of another architecture is told which keys differ.
  auto config = tiny_gva_config();
  config.hidden_size = 40;
  config.use_output_gate = false;
  nn::CombaForCausalLM other(config);
  const std::string msg = error_of([&] { load_weights(other, dir.path()); });
  EXPECT_THAT(msg, HasSubstr(dir.file("config.json") + ": describes another architecture than the model's"));
  EXPECT_THAT(msg, HasSubstr("hidden_size = 32 in the folder, 40 in the model"));
  EXPECT_THAT(msg, HasSubstr("use_gate = true in the folder, false in the model"));
}

// ---- malformed folders -------------------------------------------------------------------

// A config.json asking for more memory than the machine has (vocab_size 1e12) is refused
// before anything is allocated, with the bytes and the keys (issue 15, case 6).
TEST(Pretrained, FolderTooLargeForThisMachineSaysTheBytes) {
  TempDir dir;
  auto model = tiny_model();
  save_pretrained(model, dir.path());
  auto json = nlohmann::ordered_json::parse(testing::read_bytes(dir.file("config.json")));
  json["vocab_size"] = int64_t{1'000'000'000'000};
  testing::write_bytes(dir.file("config.json"), json.dump());
  const std::string error = error_of([&] { load_pretrained(dir.path()); });
  // 2 x 1e12 x 32 embedding and lm_head parameters alone, in fp32.
  EXPECT_THAT(error, ::testing::ContainsRegex("need [0-9]+ bytes .* but this machine has [0-9]+ bytes"));
  EXPECT_THAT(error, HasSubstr("embeddings + lm_head = 2 x vocab_size x hidden_size = 2 x 1000000000000 x 32"));
}

TEST(Pretrained, MissingExtraOrMisshapenTensorsAreRejected) {
  TempDir dir;
  auto model = tiny_model();
  save_pretrained(model, dir.path());
  const std::string folder = dir.path();
  const auto original = load_safetensors(dir.file("model.safetensors"));
  const auto rewrite = [&](const std::function<void(std::vector<std::pair<std::string, torch::Tensor>>&)>& edit) {
    std::vector<std::pair<std::string, torch::Tensor>> t(original.begin(), original.end());
    edit(t);
    save_safetensors(dir.file("model.safetensors"), t);
  };
  auto target = tiny_model(false, 9);
  const auto before = target->named_parameters()["model.norm.weight"].clone();

  rewrite([](auto& t) {
    t.erase(std::find_if(t.begin(), t.end(), [](const auto& x) { return x.first == "model.layers.1.attn.D"; }));
  });
  EXPECT_THAT(error_of([&] { load_weights(target, folder); }),
              HasSubstr(folder + ": 1 tensor(s) missing for the config (2 layers, tie_word_embeddings=false): "
                                 "model.layers.1.attn.D"));
  rewrite([](auto& t) { t.emplace_back("model.layers.2.attn.D", torch::ones({2})); });
  EXPECT_THAT(error_of([&] { load_weights(target, folder); }),
              HasSubstr("1 unexpected tensor(s) for the config (2 layers, tie_word_embeddings=false): "
                        "model.layers.2.attn.D"));
  rewrite([](auto& t) {
    for (auto& [name, tensor] : t) {
      if (name == "model.norm.weight") tensor = torch::ones({33});
    }
  });
  EXPECT_THAT(error_of([&] { load_weights(target, folder); }),
              HasSubstr("model.norm.weight (file [33] in " + dir.file("model.safetensors") + ", model expects [32])"));
  // Nothing was copied by the failed loads.
  EXPECT_TRUE(torch::equal(target->named_parameters()["model.norm.weight"], before));

  // A truncated weight file is a FormatError naming it.
  rewrite([](auto&) {});
  const std::string bytes = testing::read_bytes(dir.file("model.safetensors"));
  testing::write_bytes(dir.file("model.safetensors"), bytes.substr(0, bytes.size() / 2));
  EXPECT_THAT(error_of([&] { load_weights(target, folder); }), HasSubstr(dir.file("model.safetensors") + ": "));

  core::remove_file(dir.file("model.safetensors"));
  EXPECT_THAT(error_of([&] { load_weights(target, folder); }),
              HasSubstr("no model weights: expected model.safetensors or model.safetensors.index.json"));
  EXPECT_THAT(error_of([&] { load_pretrained(dir.file("nothing")); }), HasSubstr("not a directory"));
}

TEST(Pretrained, BrokenShardIndexesAreRejected) {
  TempDir dir;
  auto model = tiny_model();
  save_pretrained(model, dir.path(), SaveOptions().max_shard_bytes(8'000));
  const std::string index_path = dir.file("model.safetensors.index.json");
  const auto index = nlohmann::json::parse(testing::read_bytes(index_path));
  auto target = tiny_model(false, 9);

  auto moved = index;
  moved["weight_map"]["model.norm.weight"] = "model-00099-of-00099.safetensors";
  testing::write_bytes(index_path, moved.dump());
  EXPECT_THAT(error_of([&] { load_weights(target, dir.path()); }),
              HasSubstr("shard model-00099-of-00099.safetensors (holding \"model.norm.weight\") is missing"));

  auto wrong = index;
  const std::string head_shard = index["weight_map"]["lm_head.weight"];
  for (const auto& [name, shard] : index["weight_map"].items()) {
    if (shard != head_shard) {
      wrong["weight_map"]["lm_head.weight"] = shard;
      break;
    }
  }
  testing::write_bytes(index_path, wrong.dump());
  EXPECT_THAT(error_of([&] { load_weights(target, dir.path()); }),
              HasSubstr("weight_map puts \"lm_head.weight\" in model-"));
  EXPECT_THAT(error_of([&] { load_weights(target, dir.path()); }), HasSubstr("which has no such tensor"));

  auto outside = index;
  outside["weight_map"]["lm_head.weight"] = "../x.safetensors";
  testing::write_bytes(index_path, outside.dump());
  EXPECT_THAT(error_of([&] { load_weights(target, dir.path()); }), HasSubstr("expected a file name in the folder"));

  testing::write_bytes(index_path, "{\"weight_map\": [");
  EXPECT_THAT(error_of([&] { load_weights(target, dir.path()); }), HasSubstr(index_path + ": bad JSON"));
}

// ---- text in and out -----------------------------------------------------------------------

TEST(Pretrained, FolderWithTokenizerGeneratesText) {
  if (!Tokenizer::available()) GTEST_SKIP() << "built without SentencePiece";
  TempDir dir;
  {
    std::ofstream corpus(dir.file("corpus.txt"));
    std::mt19937 rng(5);
    for (int i = 0; i < 1500; ++i) corpus << testing::sentence(rng) << '\n';
  }
  train_sentencepiece(dir.file("corpus.txt"), dir.file("sp"), /*vocab_size=*/80);
  auto config = tiny_gva_config();
  config.vocab_size = 80;
  torch::manual_seed(4);
  nn::CombaForCausalLM model(config);
  const std::string folder = dir.file("model");
  save_pretrained(model, folder, SaveOptions().tokenizer_model(dir.file("sp.model")));
  EXPECT_TRUE(core::path_exists(folder + "/tokenizer.model"));

  auto loaded = load_pretrained(folder);
  ASSERT_NE(loaded.tokenizer, nullptr);
  const auto out = generate_text(loaded, "kalo mine suvi", nn::GenerationOptions().max_new_tokens(6));
  const auto prompt = loaded.tokenizer->encode("kalo mine suvi");
  ASSERT_EQ(out.prompt_ids.size(), prompt.size() + 1);
  EXPECT_EQ(out.prompt_ids.front(), 1);  // BOS
  EXPECT_GE(out.new_ids.size(), 1u);
  EXPECT_LE(out.new_ids.size(), 6u);
  // Greedy generation is the argmax chain of the model itself.
  std::vector<int64_t> seq(out.prompt_ids.begin(), out.prompt_ids.end());
  for (const int id : out.new_ids) {
    const auto next = logits(loaded.model, torch::tensor(seq).unsqueeze(0))[0][-1].argmax().item<int64_t>();
    EXPECT_EQ(next, id);
    seq.push_back(id);
  }
  std::vector<int> text_ids;
  for (const int id : out.new_ids) {
    if (id == 2) break;
    text_ids.push_back(id);
  }
  EXPECT_EQ(out.text, loaded.tokenizer->decode(text_ids));

#ifdef COMBA_GENERATE_BIN
  // The program users run prints the prompt followed by the same greedy continuation.
  const std::string command = std::string(COMBA_GENERATE_BIN) + " --model " + folder +
                              " --prompt 'kalo mine suvi' --max-new-tokens 6 --device cpu --threads 1";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string printed;
  for (char buffer[256]; fgets(buffer, sizeof buffer, pipe) != nullptr;) printed += buffer;
  EXPECT_EQ(pclose(pipe), 0);
  EXPECT_EQ(printed, "kalo mine suvi" + out.text + "\n");
#endif
}

// ---- Python interop ----------------------------------------------------------------------

std::string python() {
  const char* env = std::getenv("COMBA_PYTHON");
  return env && *env ? env : COMBA_PYTHON;
}

// Runs the interop script; 77 means torch or safetensors is not importable there.
int run_script(const std::string& args, const std::string& log) {
  const std::string cmd = "\"" + python() + "\" \"" COMBA_IO_SCRIPT "\" " + args + " > \"" + log + "\" 2>&1";
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class PythonInterop : public ::testing::TestWithParam<std::string> {};

TEST_P(PythonInterop, FlaFolderFromPythonLoadsAndMatchesTheReference) {
  TempDir dir;
  const std::string folder = dir.file("fla");
  const int rc = run_script("write \"" + folder + "\" " + GetParam(), dir.file("write.log"));
  // 77: torch or safetensors missing there; 127: no such interpreter.
  if (rc == 77 || rc == 127) GTEST_SKIP() << python() << ": " << testing::read_bytes(dir.file("write.log"));
  ASSERT_EQ(rc, 0) << testing::read_bytes(dir.file("write.log"));

  auto loaded = load_pretrained(folder);
  const auto expected = load_safetensors(folder + "/expected.safetensors");
  const auto got = logits(loaded.model, expected.at("input_ids"));
  const auto& want = expected.at("logits");
  ASSERT_EQ(got.sizes(), want.sizes());
  const double err = ((got - want).abs().max() / want.abs().max()).item<double>();
  EXPECT_LT(err, 1e-4) << "max relative logit error vs the PyTorch reference";
  EXPECT_GT(want.abs().max().item<double>(), 0.1);  // the reference is not trivially small

  // And back: export here, load in Python, same logits from the reference there.
  const std::string exported = dir.file("exported");
  save_pretrained(loaded.model, exported, SaveOptions().max_shard_bytes(GetParam() == "gva" ? 20'000 : 1'000'000'000),
                  loaded.config.extra);
  save_safetensors(exported + "/io.safetensors",
                   {{"input_ids", expected.at("input_ids")}, {"logits", got.contiguous()}});
  const int check = run_script("check \"" + exported + "\"", dir.file("check.log"));
  EXPECT_EQ(check, 0) << testing::read_bytes(dir.file("check.log"));
  std::cout << "[python check " << GetParam() << "] " << testing::read_bytes(dir.file("check.log"));
}

INSTANTIATE_TEST_SUITE_P(Cases, PythonInterop, ::testing::Values("gva", "tied"));

}  // namespace
}  // namespace comba::io
