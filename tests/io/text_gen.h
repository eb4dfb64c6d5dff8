// Generated text for tokenizer tests: words built from a fixed syllable set, so that a
// small SentencePiece vocabulary covers every character and has enough pieces to learn.
#pragma once
#include <random>
#include <string>

namespace comba::testing {

inline std::string sentence(std::mt19937& rng) {
  static const char* syllables[] = {"ka", "lo", "mi", "ne", "su", "ra", "to", "vi", "ba", "de", "qu", "ox"};
  std::uniform_int_distribution<int> n_words(3, 12), n_syl(1, 4), syl(0, 11);
  std::string s;
  const int words = n_words(rng);
  for (int w = 0; w < words; ++w) {
    if (w) s += ' ';
    const int k = n_syl(rng);
    for (int i = 0; i < k; ++i) s += syllables[syl(rng)];
  }
  return s + ".";
}

}  // namespace comba::testing
