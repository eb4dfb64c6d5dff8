"""Profiles one chunk_comba forward+backward on CUDA (torch.profiler) and prints the kernels
that take the most device time. With --once: one plain forward+backward, no profiler (for
external profilers such as ncu).
Usage: python benchmarks/profile_chunk.py BUILD_DIR [B T H K V] [--once]"""
import sys

import torch

torch.ops.load_library(f"{sys.argv[1]}/ops/libcomba_ops.so")
once = "--once" in sys.argv
args = [a for a in sys.argv[2:] if a != "--once"]
B, T, H, K, V = (int(x) for x in (args[:5] if len(args) >= 5 else (8, 2048, 16, 128, 128)))
dev = dict(device="cuda", dtype=torch.bfloat16)
q, k, p = (torch.randn(B, T, H, K, **dev, requires_grad=True) for _ in range(3))
v = torch.randn(B, T, H, V, **dev, requires_grad=True)
g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, device="cuda")).requires_grad_()
beta = torch.rand(B, T, H, device="cuda", requires_grad=True)


def step():
    o, _ = torch.ops.comba.chunk_comba(q, k, v, p, g, beta, None, None, False, True, None)
    o.backward(torch.randn_like(o))


if once:
    step()
    torch.cuda.synchronize()
    sys.exit(0)
for _ in range(3):
    step()
torch.cuda.synchronize()
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
    step()
    torch.cuda.synchronize()
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=70))
