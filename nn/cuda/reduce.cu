// Column sums in a fixed order: a block owns 32 columns; its 8 thread rows each sum a
// fixed stripe of rows (r = ty, ty + 8, ...) and thread row 0 adds the 8 stripes in order.
#include <cuda_runtime.h>

#include "reduce.h"

namespace comba::nn::cuda {

namespace {
constexpr int kColumnsPerBlock = 32;
constexpr int kStripes = 8;

__global__ void __launch_bounds__(kColumnsPerBlock* kStripes)
    column_sum_kernel(const float* __restrict__ in, int64_t rows, int64_t cols, float* __restrict__ out) {
  __shared__ float stripe[kStripes][kColumnsPerBlock];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColumnsPerBlock + threadIdx.x;
  float acc = 0.f;
  if (c < cols) {
    for (int64_t r = threadIdx.y; r < rows; r += kStripes) acc += in[r * cols + c];
  }
  stripe[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float total = 0.f;
#pragma unroll
    for (int s = 0; s < kStripes; ++s) total += stripe[s][threadIdx.x];
    out[c] = total;
  }
}
}  // namespace

int launch_column_sum(const float* in, int64_t rows, int64_t cols, float* out, void* stream) {
  if (cols == 0) return 0;
  const dim3 grid(static_cast<unsigned>((cols + kColumnsPerBlock - 1) / kColumnsPerBlock));
  const dim3 block(kColumnsPerBlock, kStripes);
  column_sum_kernel<<<grid, block, 0, static_cast<cudaStream_t>(stream)>>>(in, rows, cols, out);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace comba::nn::cuda
