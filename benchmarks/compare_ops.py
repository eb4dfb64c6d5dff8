"""The chunk operator beside its anchors, on the same inputs, in one GPU call: ours
(torch.ops.comba.chunk_comba), fla's chunk_comba, fla's chunk_gated_delta_rule and
FlashQLA's chunk_gated_delta_rule (the fastest public Hopper kernels for the same chunk
algebra without Comba's state-feedback term: the gated delta rule). Each implementation
runs in a worker process of its own (a crash or a missing wheel costs one line, not the
call); every worker draws the same inputs from the same seed.

One JSON line per (case, implementation): shapes, dtype, median forward and forward +
backward time (CUDA events, after warm-up runs that include any JIT compile and autotune),
the extra peak memory of forward + backward, and tokens/s of forward + backward. Then one
line per case with each anchor's fwd+bwd time over ours.

Inputs: bf16 q, k, v (and p for Comba), fp32 log-decay g = logsigmoid(randn), beta =
sigmoid(randn) in bf16, l2norm in the kernel, no initial or final state; gradients are set
to none before each fwd+bwd, as after a training loop's zero_grad.

The anchors come from wheels (the GPU machine has no network): download them here
    pip download --no-deps --python-version 3.12 --only-binary=:all: \
        flash-linear-attention==0.6.0 fla-core==0.6.0 flash-qla tilelang apache-tvm-ffi \
        torch-c-dlpack-ext z3-solver cloudpickle ml-dtypes psutil tqdm einops
and put them on PYTHONPATH there (pip install --no-deps --target DIR, or unpack).

The anchors compile on first use: on an H200, FlashQLA's TileLang kernels take about a minute
per shape and fla's Triton autotune longer. --cache-dir DIR keeps both compilers' caches
there (Triton's autotune results too). One call can fill it and bring it back (for example
as a tarball under $OUT), and a later call can carry it in and time the anchors without
compiling.

Usage: python3 benchmarks/compare_ops.py BUILD_DIR [--cache-dir DIR]
           [--impls ours,ours_split,fla_comba,fla_gdn,flashqla] [--split-length 4096]
           [--cases 8x2048x16x128x128,...,varlen] [--iters 20]
ours_split is ours with chunk_comba's sequence split (split_length, the segment length in
tokens); its summary ratio says what the split gains or costs on each case.
A case is BxTxHxKxV, or "varlen": one packed row of one 30000-token document and 60 short
ones (32768 tokens, H16 K=V=128)."""
import argparse
import json
import os
import statistics
import subprocess
import sys

DEFAULT_CASES = "8x2048x16x128x128,8x2048x6x128x256,1x32768x16x128x128,varlen"
IMPLS = ("ours", "ours_split", "fla_comba", "fla_gdn", "flashqla")


def parse_case(name):
    if name == "varlen":
        # One long document and 60 short ones in one packed row of 32768 tokens.
        short = [(2768 * (i + 1)) // 60 - (2768 * i) // 60 for i in range(60)]
        lengths = [30000] + short
        return dict(B=1, T=sum(lengths), H=16, K=128, V=128, lengths=lengths)
    B, T, H, K, V = (int(x) for x in name.split("x"))
    return dict(B=B, T=T, H=H, K=K, V=V, lengths=None)


def make_inputs(case, torch):
    gen = torch.Generator(device="cuda").manual_seed(0)
    B, T, H, K, V = case["B"], case["T"], case["H"], case["K"], case["V"]
    dev = dict(device="cuda", generator=gen)

    def leaf(shape, dtype=torch.bfloat16, fn=None):
        x = torch.randn(*shape, **dev)
        if fn is not None:
            x = fn(x)
        return x.to(dtype).requires_grad_()

    q, k, p = (leaf((B, T, H, K)) for _ in range(3))
    v = leaf((B, T, H, V))
    g = leaf((B, T, H), torch.float32, torch.nn.functional.logsigmoid)
    beta = leaf((B, T, H), torch.bfloat16, torch.sigmoid)
    cu = None
    if case["lengths"] is not None:
        offsets = [0]
        for n in case["lengths"]:
            offsets.append(offsets[-1] + n)
        cu = torch.tensor(offsets, dtype=torch.long, device="cuda")
    return q, k, v, p, g, beta, cu


def make_operator(impl, build_dir, torch, split_length=None):
    """fn(q, k, v, p, g, beta, cu) -> o, with each implementation's own argument order."""
    scale = None
    if impl in ("ours", "ours_split"):
        torch.ops.load_library(f"{build_dir}/ops/libcomba_ops.so")
        split = split_length if impl == "ours_split" else None
        return lambda q, k, v, p, g, beta, cu: torch.ops.comba.chunk_comba(
            q, k, v, p, g, beta, scale, None, False, True, cu, split_length=split)[0], None
    if impl in ("fla_comba", "fla_gdn"):
        note = None
        import fla.ops.common.chunk_o as chunk_o
        if chunk_o.IS_NVIDIA_HOPPER and chunk_o.TRITON_ABOVE_3_4_0 and not chunk_o.TRITON_ABOVE_3_7_1:
            # fla 0.6 refuses its gated chunk backward on Hopper with Triton in [3.4, 3.7.1)
            # (fla #640: wrong gradients there). The kernels do the same work either way.
            import triton
            chunk_o.TRITON_ABOVE_3_7_1 = True
            note = f"guard of fla #640 lifted for timing only (Triton {triton.__version__})"
        if impl == "fla_comba":
            from fla.ops.comba import chunk_comba
            return lambda q, k, v, p, g, beta, cu: chunk_comba(
                q, k, v, p, g, beta, scale=scale, use_qk_l2norm_in_kernel=True, cu_seqlens=cu)[0], note
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
        return lambda q, k, v, p, g, beta, cu: chunk_gated_delta_rule(
            q, k, v, g, beta, scale=scale, use_qk_l2norm_in_kernel=True, cu_seqlens=cu)[0], note
    if impl == "flashqla":
        from flash_qla import chunk_gated_delta_rule
        return lambda q, k, v, p, g, beta, cu: chunk_gated_delta_rule(
            q, k, v, g, beta, scale=scale, use_qk_l2norm_in_kernel=True, cu_seqlens=cu)[0], None
    raise ValueError(impl)


def median_ms(torch, fn, iters):
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def worker(args):
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    fn, note = make_operator(args.worker, args.build_dir, torch, args.split_length)
    for name in args.cases.split(","):
        case = parse_case(name)
        inputs = make_inputs(case, torch)
        leaves = list(inputs[:6])
        q, k, v, p, g, beta, cu = inputs
        grad_o = torch.randn(case["B"], case["T"], case["H"], case["V"], device="cuda",
                             generator=torch.Generator(device="cuda").manual_seed(1)).to(torch.bfloat16)

        def forward():
            return fn(q, k, v, p, g, beta, cu)

        def forward_backward():
            for x in leaves:
                x.grad = None
            forward().backward(grad_o)

        line = dict(case=name, impl=args.worker, B=case["B"], T=case["T"], H=case["H"], K=case["K"],
                    V=case["V"], documents=len(case["lengths"]) if case["lengths"] else case["B"],
                    dtype="bf16", l2norm=True)
        if args.worker == "ours_split":
            line["split_length"] = args.split_length
        try:
            for _ in range(3):  # JIT compile, autotune, allocator warm-up
                forward_backward()
            torch.cuda.synchronize()
            fwd = median_ms(torch, forward, args.iters)
            for x in leaves:
                x.grad = None
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            forward_backward()
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - base
            fwd_bwd = median_ms(torch, forward_backward, args.iters)
            tokens = case["B"] * case["T"]
            line.update(fwd_ms=round(fwd, 4), fwd_bwd_ms=round(fwd_bwd, 4),
                        extra_peak_gib=round(peak / 2**30, 3),
                        fwd_bwd_tokens_per_s=round(tokens / (fwd_bwd * 1e-3)))
        except Exception as error:  # one failed case must not lose the others
            line.update(error=f"{type(error).__name__}: {str(error)[:300]}")
        if note:
            line["note"] = note
        print(json.dumps(line), flush=True)
        del inputs, leaves, q, k, v, p, g, beta
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build_dir")
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--cases", default=DEFAULT_CASES)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--split-length", type=int, default=4096,
                    help="ours_split's segment length in tokens (a positive multiple of 64)")
    ap.add_argument("--cache-dir", help="keep the anchors' compiled kernels and autotune results here")
    ap.add_argument("--worker-timeout", type=float, default=None, help="seconds per implementation")
    ap.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.split_length <= 0 or args.split_length % 64 != 0:
        ap.error(f"--split-length expected a positive multiple of 64, got {args.split_length}")
    if args.worker:
        return worker(args)
    env = os.environ.copy()
    if args.cache_dir:
        cache = os.path.abspath(args.cache_dir)
        env.update(TRITON_CACHE_DIR=os.path.join(cache, "triton"), TRITON_CACHE_AUTOTUNING="1",
                   TILELANG_CACHE_DIR=os.path.join(cache, "tilelang"))
    results = {}
    for impl in args.impls.split(","):
        cmd = [sys.executable, __file__, args.build_dir, "--worker", impl, "--cases", args.cases,
               "--iters", str(args.iters), "--split-length", str(args.split_length)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                  timeout=args.worker_timeout)
            stdout, stderr, code = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as expired:  # keep the cases it finished
            def text(x):
                return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
            stdout, stderr, code = text(expired.stdout), text(expired.stderr), f"timeout {args.worker_timeout} s"
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        for line in lines:
            print(line, flush=True)
            row = json.loads(line)
            results[(row["case"], impl)] = row
        if code != 0:
            print(json.dumps(dict(impl=impl, error=f"worker exited: {code}", stderr_tail=stderr[-600:])),
                  flush=True)
    for name in args.cases.split(","):
        ours = results.get((name, "ours"), {}).get("fwd_bwd_ms")
        ratios = {}
        for impl in IMPLS[1:]:
            theirs = results.get((name, impl), {}).get("fwd_bwd_ms")
            if ours and theirs:
                ratios[f"{impl}_over_ours_fwd_bwd"] = round(theirs / ours, 3)
        print(json.dumps(dict(case=name, summary=True, **ratios)), flush=True)


if __name__ == "__main__":
    main()
