// Counter-based randomness for data: batch i is drawn from a generator seeded by
// (seed, stream, i) alone, so that any batch can be rebuilt from its index. This is what
// makes the data position of a checkpoint a single integer and prefetching trivial.
#pragma once
#include <cstdint>

namespace comba::train {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// xoshiro-free and tiny on purpose: a splitmix64 stream is plenty for sampling data.
class CounterRng {
 public:
  CounterRng(uint64_t seed, uint64_t stream, uint64_t index)
      : state_(splitmix64(splitmix64(splitmix64(seed) ^ stream) ^ index)) {}
  uint64_t next() { return splitmix64(state_++); }
  // Uniform in [0, n), n > 0 (multiply-shift; the bias is far below what data notices).
  uint64_t below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
  }

 private:
  uint64_t state_;
};

// Streams: one per use, so train and eval never share draws.
enum class DataStream : uint64_t { train = 1, eval = 2 };

}  // namespace comba::train
