// Tile choices of the chunked kernels (one place): the scans' state-column split BV.
#pragma once

namespace comba::cuda {

struct ChunkTraits {
  // The scans run one CTA per (sequence, value head, BV columns), one CTA per SM (their
  // shared memory): the widest slice that still fills half the GPU, narrower ones when
  // there are too few (sequence, head) pairs. A second wave of narrow slices costs more
  // than idle SMs under one wave of wide ones (H100, bf16 forward: B2 T2048 H8 K256 V512
  // 0.36 ms with 128 CTAs of 64 columns, 0.50 with 256 of 32; B4 T4096 H6 V256 0.37
  // with 96 CTAs of 64, 0.50 with 192 of 32).
  static int scan_columns(long long seqs_x_heads, int value_dim, int num_sms) {
    for (int bv : {64, 32}) {
      if (2 * seqs_x_heads * ((value_dim + bv - 1) / bv) >= num_sms) return bv;
    }
    return 16;
  }
};

}  // namespace comba::cuda
