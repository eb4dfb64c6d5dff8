// Turns the runtime dtype and key dim into the compiled instantiation (one dispatch
// point, in the operator's dispatch idiom: ../dispatch.cuh; tile choices live in
// chunk_traits.h).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "../common.cuh"
#include "../dispatch.cuh"
#include "chunk_params.h"
#include "chunk_traits.h"

namespace comba::cuda {
namespace chunk {
template <typename T, int KP>
int launch_prep(const ChunkParams& p, cudaStream_t stream);
template <typename T, int KP>
int launch_scan(const ChunkParams& p, bool backward, int bv, cudaStream_t stream);
template <typename T, int KP>
int launch_v_new(const ChunkParams& p, cudaStream_t stream);
template <typename T, int KP>
int launch_grad(const ChunkParams& p, cudaStream_t stream);
}  // namespace chunk

namespace {
enum class Stage { kPrep, kScanFwd, kVNew, kScanBwd, kGrad };

template <typename T, int KP>
int run(Stage stage, const ChunkParams& p, cudaStream_t s) {
  const int bv = ChunkTraits::scan_columns(p.scan_walk_count() * p.value_heads, p.value_dim, current_device_sms());
  switch (stage) {
    case Stage::kPrep: return chunk::launch_prep<T, KP>(p, s);
    case Stage::kScanFwd: return chunk::launch_scan<T, KP>(p, false, bv, s);
    case Stage::kVNew: return chunk::launch_v_new<T, KP>(p, s);
    case Stage::kScanBwd: return chunk::launch_scan<T, KP>(p, true, bv, s);
    case Stage::kGrad: return chunk::launch_grad<T, KP>(p, s);
  }
  return kNotCompiled;
}

// 16-bit inputs only; key tiles of 64, 128 or 256 columns.
int dispatch(Stage stage, const ChunkParams& p, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  if (p.key_dim > kChunkMaxKeyDim) return kNotCompiled;
  return dispatch_dtype<__nv_bfloat16, __half>(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    return dispatch_value<64, 128, 256>(chunk_padded_key_dim(p.key_dim), [&](auto kp) {
      return run<T, decltype(kp)::value>(stage, p, s);
    });
  });
}
}  // namespace

int launch_chunk_prep(const ChunkParams& p, void* stream) { return dispatch(Stage::kPrep, p, stream); }
int launch_chunk_scan_fwd(const ChunkParams& p, void* stream) { return dispatch(Stage::kScanFwd, p, stream); }
int launch_chunk_v_new(const ChunkParams& p, void* stream) { return dispatch(Stage::kVNew, p, stream); }
int launch_chunk_scan_bwd(const ChunkParams& p, void* stream) { return dispatch(Stage::kScanBwd, p, stream); }
int launch_chunk_grad(const ChunkParams& p, void* stream) { return dispatch(Stage::kGrad, p, stream); }

}  // namespace comba::cuda
