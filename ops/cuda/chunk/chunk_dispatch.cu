// Turns the runtime dtype and key dim into the compiled instantiation (one dispatch
// point; tile choices live in chunk_traits.h).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "../common.cuh"
#include "chunk_params.h"
#include "chunk_traits.h"

namespace comba::cuda {
namespace chunk {
template <typename T, int KP>
int launch_prep(const ChunkParams& p, cudaStream_t stream);
template <typename T, int KP>
int launch_scan(const ChunkParams& p, bool backward, int bv, cudaStream_t stream);
template <typename T, int KP>
int launch_grad(const ChunkParams& p, cudaStream_t stream);
}  // namespace chunk

namespace {
enum class Stage { kPrep, kScanFwd, kScanBwd, kGrad };

template <typename T, int KP>
int run(Stage stage, const ChunkParams& p, cudaStream_t s) {
  const int bv = ChunkTraits::scan_columns(static_cast<long long>(p.num_seqs) * p.value_heads,
                                           p.value_dim, current_device_sms());
  switch (stage) {
    case Stage::kPrep: return chunk::launch_prep<T, KP>(p, s);
    case Stage::kScanFwd: return chunk::launch_scan<T, KP>(p, false, bv, s);
    case Stage::kScanBwd: return chunk::launch_scan<T, KP>(p, true, bv, s);
    case Stage::kGrad: return chunk::launch_grad<T, KP>(p, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

template <typename T>
int run_kp(Stage stage, const ChunkParams& p, cudaStream_t s) {
  switch (chunk_padded_key_dim(p.key_dim)) {
    case 64: return run<T, 64>(stage, p, s);
    case 128: return run<T, 128>(stage, p, s);
    case 256: return run<T, 256>(stage, p, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int dispatch(Stage stage, const ChunkParams& p, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  if (p.key_dim > kChunkMaxKeyDim) return static_cast<int>(cudaErrorInvalidValue);
  switch (p.dtype) {
    case core::ElementType::kBFloat16: return run_kp<__nv_bfloat16>(stage, p, s);
    case core::ElementType::kFloat16: return run_kp<__half>(stage, p, s);
    default: return static_cast<int>(cudaErrorInvalidValue);
  }
}
}  // namespace

int launch_chunk_prep(const ChunkParams& p, void* stream) { return dispatch(Stage::kPrep, p, stream); }
int launch_chunk_scan_fwd(const ChunkParams& p, void* stream) { return dispatch(Stage::kScanFwd, p, stream); }
int launch_chunk_scan_bwd(const ChunkParams& p, void* stream) { return dispatch(Stage::kScanBwd, p, stream); }
int launch_chunk_grad(const ChunkParams& p, void* stream) { return dispatch(Stage::kGrad, p, stream); }

}  // namespace comba::cuda
