"""One chunk_comba forward + backward on CUDA (bf16), for external profilers (ncu).
Usage: python benchmarks/one_chunk_step.py BUILD_DIR [B T H K V]"""
import sys

import torch

torch.ops.load_library(f"{sys.argv[1]}/ops/libcomba_ops.so")
B, T, H, K, V = (int(x) for x in (sys.argv[2:7] if len(sys.argv) > 6 else (8, 2048, 16, 128, 128)))
dev = dict(device="cuda", dtype=torch.bfloat16)
q, k, p = (torch.randn(B, T, H, K, **dev, requires_grad=True) for _ in range(3))
v = torch.randn(B, T, H, V, **dev, requires_grad=True)
g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, device="cuda")).requires_grad_()
beta = torch.rand(B, T, H, device="cuda", requires_grad=True)
o, _ = torch.ops.comba.chunk_comba(q, k, v, p, g, beta, None, None, False, True, None)
o.backward(torch.randn_like(o))
torch.cuda.synchronize()
