// comba-tokenize --train-tokenizer: trains a SentencePiece model with SentencePiece's own
// trainer (through io::train_sentencepiece) and writes PREFIX.model and PREFIX.vocab.
//
//   comba-tokenize --train-tokenizer --vocab-size N --model-type bpe|unigram
//                  --input FILE... --out PREFIX [--input-sentence-size N] [--byte-fallback]
//                  [--unk-id 0] [--bos-id 1] [--eos-id 2] [--pad-id -1]
//
// The special ids default to what the model configs expect (configs/*.yaml: bos_token_id
// 1, eos_token_id 2), so that shards encoded with the result need no --eos-id.
#include "train_tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <iostream>
#include <limits>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "comba/core/cli.h"
#include "comba/core/file_util.h"
#include "comba/io/tokenizer.h"

namespace comba::tokenize {

namespace {

constexpr const char* kTrainFlag = "--train-tokenizer";

struct TrainArgs {
  io::TrainTokenizerOptions options;
  bool debug = false;
};

std::optional<int> parse(int argc, const char* const* argv, TrainArgs& a) {
  CLI::App app{"Trains a SentencePiece tokenizer on text files (one sentence per line), writing PREFIX.model and "
               "PREFIX.vocab.",
               "comba-tokenize --train-tokenizer"};
  cli::configure(app);
  auto& o = a.options;
  o.num_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  app.add_flag(kTrainFlag, "train a tokenizer instead of encoding text")->required();
  app.add_option("--vocab-size", o.vocab_size, "pieces in the vocabulary, special ones included")
      ->required()
      ->check(cli::integer_at_least(1, std::numeric_limits<int32_t>::max()));
  app.add_option("--model-type", o.model_type, "SentencePiece's algorithm")->check(cli::one_of({"bpe", "unigram"}));
  app.add_option("--input", o.input_files, "text files to train on")
      ->required()
      ->expected(1, -1)
      ->check(CLI::Validator(
          [](std::string& path) -> std::string {
            return core::is_regular_file(path) ? std::string() : path + ": not a readable file";
          },
          "", "FILE"));
  app.add_option("--out", o.model_prefix, "writes PREFIX.model and PREFIX.vocab")->required();
  app.add_option("--input-sentence-size", o.input_sentence_size,
                 "train on N sentences sampled from the input (0: all of it)")
      ->check(cli::integer_at_least(0));
  app.add_flag("--byte-fallback", o.byte_fallback,
               "characters outside the vocabulary become byte pieces instead of <unk>");
  app.add_option("--character-coverage", o.character_coverage, "share of characters the vocabulary must cover")
      ->check(cli::number_in(cli::open(0.0), cli::closed(1.0)));
  app.add_option("--unk-id", o.unk_id, "id of <unk>")->check(cli::integer_at_least(0));
  app.add_option("--bos-id", o.bos_id, "id of <s> (-1: none); the model config's bos_token_id")
      ->check(cli::integer_at_least(-1));
  app.add_option("--eos-id", o.eos_id, "id of </s> (-1: none); the model config's eos_token_id")
      ->check(cli::integer_at_least(-1));
  app.add_option("--pad-id", o.pad_id, "id of <pad> (-1: none); the model config's pad_token_id")
      ->check(cli::integer_at_least(-1));
  app.add_option("--threads", o.num_threads, "trainer threads")->check(cli::integer_at_least(1, 1024));
  cli::add_debug_flag(app, a.debug);
  return cli::parse(app, argc, argv);
}

}  // namespace

bool wants_tokenizer_training(int argc, const char* const* argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], kTrainFlag) == 0) return true;
  }
  return false;
}

int train_tokenizer_main(int argc, const char* const* argv) {
  TrainArgs a;
  if (const auto status = parse(argc, argv, a)) return *status;
  try {
    if (!io::Tokenizer::available()) throw std::runtime_error(io::Tokenizer::unavailable_reason());
    const auto& prefix = a.options.model_prefix;
    if (const auto slash = prefix.find_last_of('/'); slash != std::string::npos && slash > 0) {
      core::make_directories(prefix.substr(0, slash));
    }
    io::train_sentencepiece(a.options);
    // Loaded back: the summary reports what the file holds, not what was asked for.
    const io::Tokenizer tok(prefix + ".model");
    const nlohmann::json summary = {{"model", prefix + ".model"}, {"vocab", prefix + ".vocab"},
                                    {"vocab_size", tok.vocab_size()}, {"model_type", a.options.model_type},
                                    {"unk_id", tok.unk_id()}, {"bos_id", tok.bos_id()},
                                    {"eos_id", tok.eos_id()}, {"pad_id", tok.pad_id()}};
    std::cout << summary.dump() << "\n";
  } catch (const std::exception& e) {
    return cli::report_error("comba-tokenize", e, a.debug);
  }
  return 0;
}

}  // namespace comba::tokenize
