// Tiling of the fused recurrent kernel. A CTA owns kColumns state columns (one per lane)
// of one (sequence, value head); its kWarps warps split the K rows into slabs of
// RowsPerThread, so the fp32 state lives in registers and every state row access is a
// coalesced 128-byte line. Reductions over K go through shared memory across warps.
#pragma once

namespace comba::cuda {

struct RecurrentTraits {
  static constexpr int kWarps = 8;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kColumns = 32;
};

// Rows of the state each thread keeps: K / kWarps rounded up to a compiled size.
inline int recurrent_rows_per_thread(int key_dim) {
  const int need = (key_dim + RecurrentTraits::kWarps - 1) / RecurrentTraits::kWarps;
  for (int rows : {2, 4, 8, 16, 32}) {
    if (need <= rows) return rows;
  }
  return -1;
}

}  // namespace comba::cuda
