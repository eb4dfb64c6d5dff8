// comba-tokenize --train-tokenizer: the tokenizer-training mode, with flags of its own
// (train_tokenizer.cpp); main.cpp only dispatches here.
#pragma once

namespace comba::tokenize {

// True when the command line asks for --train-tokenizer.
bool wants_tokenizer_training(int argc, const char* const* argv);

// Parses the training flags, trains, prints one JSON line; returns main's status.
int train_tokenizer_main(int argc, const char* const* argv);

}  // namespace comba::tokenize
