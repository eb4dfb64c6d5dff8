// Tile choices of the chunked kernels (one place): the scans' state-column split BV.
#pragma once

namespace comba::cuda {

struct ChunkTraits {
  // The scans run one CTA per (sequence, value head, BV columns); narrow slices when
  // there are too few (sequence, head) pairs to fill the GPU.
  static int scan_columns(long long seqs_x_heads, int value_dim, int num_sms) {
    for (int bv : {64, 32}) {
      if (seqs_x_heads * ((value_dim + bv - 1) / bv) >= num_sms) return bv;
    }
    return 16;
  }
};

}  // namespace comba::cuda
