"""Per-kernel device time of chunk_comba's forward + backward on CUDA (torch.profiler), on
compare_ops.py's cases and inputs (bf16, l2norm in the kernel, no initial or final state,
gradients set to none before each step).

One JSON line per (case, kernel) for the kernels that take the most device time: the
case's shapes, the kernel's name, how many times it ran in the profiled steps and its
average time per run in microseconds. With --once: one plain forward + backward per case and
no profiler (for external profilers such as Nsight Compute).

Usage: python3 benchmarks/profile_chunk.py BUILD_DIR [--cases 8x2048x16x128x128,...,varlen]
           [--steps 5] [--top 12] [--once] [--split-length N]
A case is BxTxHxKxV, or "varlen" (one packed row of a 30000-token document and 60 short
ones)."""
import argparse
import json
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_ops  # noqa: E402  (the cases, the inputs and our operator's call)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build_dir")
    ap.add_argument("--cases", default="1x32768x16x128x128,8x2048x6x128x256,8x2048x16x128x128")
    ap.add_argument("--steps", type=int, default=5, help="profiled forward + backward steps per case")
    ap.add_argument("--top", type=int, default=12, help="kernels listed per case")
    ap.add_argument("--once", action="store_true", help="one step per case, no profiler")
    ap.add_argument("--split-length", type=int, default=None,
                    help="run chunk_comba with its sequence split at this segment length (tokens)")
    args = ap.parse_args()
    if args.split_length is not None and (args.split_length <= 0 or args.split_length % 64 != 0):
        ap.error(f"--split-length expected a positive multiple of 64, got {args.split_length}")
    if args.steps < 1 or args.top < 1:
        ap.error("--steps and --top expect a positive number")
    cases = []
    for name in args.cases.split(","):
        try:
            cases.append((name, compare_ops.parse_case(name)))
        except ValueError:
            ap.error(f"--cases: expected BxTxHxKxV or varlen, got {name!r}")
    if not torch.cuda.is_available():
        sys.exit("profile_chunk.py: needs a CUDA device")
    fn, _ = compare_ops.make_operator("ours_split" if args.split_length else "ours", args.build_dir, torch,
                                      args.split_length)
    for name, case in cases:
        q, k, v, p, g, beta, cu = compare_ops.make_inputs(case, torch)
        grad_o = torch.randn(case["B"], case["T"], case["H"], case["V"], device="cuda").to(torch.bfloat16)

        def step():
            for x in (q, k, v, p, g, beta):
                x.grad = None
            fn(q, k, v, p, g, beta, cu).backward(grad_o)

        if args.once:
            step()
            torch.cuda.synchronize()
            continue
        for _ in range(3):  # warm-up: allocator, lazy module loads
            step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(args.steps):
                step()
            torch.cuda.synchronize()
        shapes = {key: case[key] for key in ("B", "T", "H", "K", "V")}
        kernels = sorted(prof.key_averages(), key=lambda e: -e.device_time_total)[: args.top]
        for e in kernels:
            print(json.dumps({"case": name, **shapes, "dtype": "bf16", "steps": args.steps,
                              "kernel": e.key, "runs": e.count,
                              "avg_us": round(e.device_time_total / e.count, 1)}), flush=True)


if __name__ == "__main__":
    main()
