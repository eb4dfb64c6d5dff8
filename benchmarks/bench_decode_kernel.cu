// Kernel-only time of one decode step (T = 1, H16 K=V=128, bf16, l2norm, initial and final
// state) per batch size and state tile, for the decode kernel (separate state buffers; in
// place with the chosen tile, fp32 and bf16 state, as comba_decode_step_ runs it, and without the
// evict-first state hints) and the segment-staged
// forward kernel, beside a device copy of the same state bytes (the floor). Time per step
// is the mean over back-to-back launches between two CUDA events, so no host time is in
// it (bench_ops times the whole C++ call instead). One JSON line per case; no torch.
// Usage: bench_decode_kernel [--iters N]
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "comba/core/cli.h"
#include "../ops/cuda/recurrent/recurrent_decode_kernel.cuh"
#include "../ops/cuda/recurrent/recurrent_fwd_kernel.cuh"
#include "event_timer.h"

namespace {

using comba::cuda::RecurrentFwdParams;
using Element = __nv_bfloat16;
constexpr int kHeads = 16, kDim = 128, kMaxBatch = 256;

// Device buffers for kMaxBatch sequences, freed at exit.
template <typename T>
T* device_copy(const std::vector<T>& host) {
  T* ptr = nullptr;
  cudaMalloc(&ptr, host.size() * sizeof(T));
  cudaMemcpy(ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  return ptr;
}

// Mean over `iters` back-to-back launches, after 10 warm-up ones.
template <typename Launch>
float us_per_step(Launch&& launch, int iters) {
  for (int i = 0; i < 10; ++i) launch();
  comba::bench::EventTimer timer;
  return timer.time_ms([&] {
           for (int i = 0; i < iters; ++i) launch();
         }) * 1000.f / iters;
}

// state_scale: the state's bytes per entry over fp32's (0.5 for a bf16 state).
void print(const char* kernel, int batch, int rows, int vec, bool chosen, float us,
           double state_scale = 1.0) {
  const double state_bytes =
      state_scale * 2.0 * batch * kHeads * kDim * kDim * sizeof(float);  // read + write
  std::printf("{\"case\": \"decode_kernel_B%d_H%d_K%d_V%d\", \"B\": %d, \"dtype\": \"bf16\", "
              "\"kernel\": \"%s\", \"rows\": %d, \"vec\": %d, \"chosen_tile\": %s, "
              "\"us_per_step\": %.2f, \"state_tb_per_s\": %.3f, \"error\": \"%s\"}\n",
              batch, kHeads, kDim, kDim, batch, kernel, rows, vec, chosen ? "true" : "false", us,
              state_bytes / (us * 1e6), cudaGetErrorString(cudaGetLastError()));
}

}  // namespace

int main(int argc, char** argv) {
  int iters = 200;
  CLI::App app{"Kernel-only time of one decode step per batch size and state tile (CUDA).", "bench_decode_kernel"};
  comba::cli::configure(app);
  app.add_option("--iters", iters, "launches per case (x5 below batch 64)")
      ->check(comba::cli::integer_at_least(1, std::numeric_limits<int>::max() / 5));
  if (const auto status = comba::cli::parse(app, argc, argv)) return *status;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("{\"skipped\": \"no CUDA device\"}\n");
    return 0;
  }
  const size_t rows = size_t(kMaxBatch) * kHeads, state = rows * kDim * kDim;
  std::vector<Element> vectors(rows * kDim);
  for (size_t i = 0; i < vectors.size(); ++i) vectors[i] = __float2bfloat16(float((i * 37) % 101) / 101.f - 0.5f);
  std::vector<float> initial(state);
  for (size_t i = 0; i < state; ++i) initial[i] = float((i * 13) % 97) / 97.f - 0.5f;
  RecurrentFwdParams params;
  params.q = device_copy(vectors);
  params.k = device_copy(vectors);
  params.p = device_copy(vectors);
  params.v = device_copy(vectors);
  params.g = device_copy(std::vector<float>(rows, -0.1f));
  params.beta = device_copy(std::vector<float>(rows, 0.5f));
  params.g_fp32 = params.beta_fp32 = true;
  float* initial_state = device_copy(initial);
  params.initial_state = initial_state;
  params.o = device_copy(std::vector<Element>(rows * kDim));
  params.final_state = device_copy(std::vector<float>(state));
  params.dtype = comba::core::ElementType::kBFloat16;
  params.seq_len = 1;
  params.heads = params.value_heads = kHeads;
  params.key_dim = params.value_dim = kDim;
  params.scale = 0.088f;
  params.use_l2norm = true;

  params.num_seqs = kMaxBatch;
  const size_t copy_bytes = state * sizeof(float);
  std::printf("{\"case\": \"device_copy_B%d_state\", \"us_per_step\": %.2f}\n", kMaxBatch,
              us_per_step([&] { cudaMemcpyAsync(params.final_state, initial_state, copy_bytes,
                                                cudaMemcpyDeviceToDevice); }, iters));
  using namespace comba::cuda;
  // The decode kernel's own parameters: the same inputs; state from initial_state to
  // final_state ("decode"), or updated in place ("decode_inplace", comba_decode_step_),
  // fp32 or bf16 ("decode_inplace_bf16state": half the state bytes).
  RecurrentDecodeParams decode;
  static_cast<comba::cuda::CombaKernelInputs&>(decode) = params;
  decode.initial_state = nullptr;
  decode.o = params.o;
  float* inplace_state = device_copy(initial);
  std::vector<__nv_bfloat16> initial_bf16(state);
  for (size_t i = 0; i < state; ++i) initial_bf16[i] = __float2bfloat16(initial[i]);
  __nv_bfloat16* bf16_state = device_copy(initial_bf16);
  auto with_state = [&](const void* in, void* out, bool bf16) {
    RecurrentDecodeParams p = decode;
    p.state_in = in, p.state_out = out, p.state_bf16 = bf16;
    return p;
  };
  const auto separate = with_state(initial_state, params.final_state, false);
  const auto in_place = with_state(inplace_state, inplace_state, false);
  const auto in_place_bf16 = with_state(bf16_state, bf16_state, true);
  for (const int batch : {1, 4, 16, 64, 256}) {
    params.num_seqs = batch;
    const int steps = batch >= 64 ? iters : 5 * iters;
    const int chosen = recurrent_decode_tile(kDim, kDim, static_cast<long long>(batch) * kHeads,
                                             current_device_sms()).vec;
    auto sized = [&](RecurrentDecodeParams p) {
      p.num_seqs = batch;
      return p;
    };
    print("decode", batch, 16, 4, chosen == 4, us_per_step([&] { launch_recurrent_decode_typed<Element, float, 16, 4>(sized(separate), 0); }, steps));
    print("decode", batch, 16, 2, chosen == 2, us_per_step([&] { launch_recurrent_decode_typed<Element, float, 16, 2>(sized(separate), 0); }, steps));
    print("decode", batch, 16, 1, chosen == 1, us_per_step([&] { launch_recurrent_decode_typed<Element, float, 16, 1>(sized(separate), 0); }, steps));
    // The chosen tile, with (streaming: std::true_type, as recurrent_dispatch.cu launches it)
    // or without the evict-first state hints.
    auto tile_variant = [&](auto state_tag, auto streaming, const RecurrentDecodeParams& p) {
      using S = decltype(state_tag);
      constexpr bool kStreaming = decltype(streaming)::value;
      if (chosen == 4) return launch_recurrent_decode_variant<Element, S, 16, 4, kStreaming>(p, 0);
      if (chosen == 2) return launch_recurrent_decode_variant<Element, S, 16, 2, kStreaming>(p, 0);
      return launch_recurrent_decode_variant<Element, S, 16, 1, kStreaming>(p, 0);
    };
    auto chosen_tile = [&](auto state_tag, const RecurrentDecodeParams& p) {
      return tile_variant(state_tag, std::true_type{}, p);
    };
    auto plain = [&](auto state_tag, const RecurrentDecodeParams& p) {
      return tile_variant(state_tag, std::false_type{}, p);
    };
    print("decode_inplace", batch, 16, chosen, true,
          us_per_step([&] { chosen_tile(float{}, sized(in_place)); }, steps));
    print("decode_inplace_bf16state", batch, 16, chosen, true,
          us_per_step([&] { chosen_tile(__nv_bfloat16{}, sized(in_place_bf16)); }, steps), 0.5);
    // Without the evict-first state hints (the kernel before them), in place, same tile;
    // checked bit for bit against the default on separate buffers at the largest batch.
    if (batch == kMaxBatch) {
      const auto sized_separate = sized(separate);
      const size_t o_count = size_t(batch) * kHeads * kDim, s_count = o_count * kDim;
      auto outputs = [&](auto&& launch) {
        std::vector<Element> o(o_count);
        std::vector<float> state_out(s_count);
        launch();
        cudaMemcpy(o.data(), params.o, o_count * sizeof(Element), cudaMemcpyDeviceToHost);
        cudaMemcpy(state_out.data(), params.final_state, s_count * sizeof(float), cudaMemcpyDeviceToHost);
        return std::make_pair(o, state_out);
      };
      const auto streaming = outputs([&] { chosen_tile(float{}, sized_separate); });
      const auto without = outputs([&] { plain(float{}, sized_separate); });
      const bool same = std::memcmp(streaming.first.data(), without.first.data(), o_count * sizeof(Element)) == 0 &&
                        std::memcmp(streaming.second.data(), without.second.data(), s_count * sizeof(float)) == 0;
      std::printf("{\"case\": \"decode_streaming_check_B%d\", \"same_bits_as_plain\": %s}\n", batch,
                  same ? "true" : "false");
    }
    print("decode_inplace_plain", batch, 16, chosen, true,
          us_per_step([&] { plain(float{}, sized(in_place)); }, steps));
    print("segment", batch, 16, 4, false, us_per_step([&] { launch_recurrent_fwd_typed<Element, 16, 4>(params, 0); }, steps));
  }
  return 0;
}
