"""Kernel workbench check of the chunked CUDA kernels with gradients: chunk_comba on the
GPU in bf16 / fp16 against the same operator's fp64 CPU reference (small shapes) or its
fp32 reference path on the GPU (large shapes), on the inputs rounded to the tested dtype.
Prints one JSON line per case with the norm-relative error of o, the final state and
every gradient; exits non-zero when one is above its bound or not finite.
Usage: python benchmarks/check_chunk_grad.py BUILD_DIR [--large]"""
import json
import sys

import torch

torch.ops.load_library(f"{sys.argv[1]}/ops/libcomba_ops.so")
ops = torch.ops.comba
BOUND = {torch.bfloat16: 1.5e-2, torch.float16: 3e-3}
NAMES = ["q", "k", "v", "p", "g", "beta", "h0"]


def rel(x, ref):
    x, ref = x.double().cpu(), ref.double().cpu()
    return ((x - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def run(inputs, cu, l2norm, device, dtype, gate_dtype, d_o, d_s):
    leaves = []
    for i, x in enumerate(inputs):
        dt = dtype if i < 4 else (gate_dtype if i < 6 else torch.float32)
        if dtype == torch.float64:
            dt = torch.float64
        leaves.append(x.to(device=device, dtype=dt).detach().requires_grad_(True))
    q, k, v, p, g, beta, h0 = leaves
    o, s = ops.chunk_comba(q, k, v, p, g, beta, None, h0, True, l2norm,
                           cu.to(device) if cu is not None else None)
    loss = (o.double() * d_o.to(device)).sum() + (s.double() * d_s.to(device)).sum()
    loss.backward()
    return [o.detach(), s.detach()] + [x.grad for x in leaves]


def case(name, B, T, H, HV, K, V, dtype, l2norm=True, varlen=None, gate_dtype=torch.float32,
         g_scale=1.0, large=False):
    gen = torch.Generator().manual_seed(abs(hash(name)) % 2**31)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float32)
    q, k, p = r(B, T, H, K), r(B, T, H, K), r(B, T, H, K)
    if not l2norm:
        q, k, p = q / K**0.5, k / K**0.5, p / K**0.5
    v = r(B, T, HV, V)
    g = torch.nn.functional.logsigmoid(r(B, T, HV) + 2) * g_scale
    beta = torch.rand(B, T, HV, generator=gen)
    cu = torch.tensor(varlen) if varlen else None
    n = len(varlen) - 1 if varlen else B
    h0 = r(n, HV, K, V)
    d_o, d_s = r(B, T, HV, V).double(), r(n, HV, K, V).double()
    # Round what the kernel sees, then the reference runs on exactly those values.
    inputs = [x.to(dtype) for x in (q, k, v, p)] + [g.to(gate_dtype), beta.to(gate_dtype), h0]
    d_o = d_o.to(dtype).double()
    got = run(inputs, cu, l2norm, "cuda", dtype, gate_dtype, d_o, d_s)
    if large:
        ref = run([x.float() for x in inputs], cu, l2norm, "cuda", torch.float32, torch.float32, d_o, d_s)
    else:
        ref = run([x.double() for x in inputs], cu, l2norm, "cpu", torch.float64, torch.float64, d_o, d_s)
    errors = {n_: rel(a, b) for n_, a, b in zip(["o", "state"] + ["d" + x for x in NAMES], got, ref)}
    finite = all(torch.isfinite(x).all().item() for x in got)
    ok = finite and all(e <= BOUND[dtype] for e in errors.values())
    print(json.dumps({"case": name, "dtype": str(dtype).split(".")[-1], "ok": ok, "finite": finite,
                      "errors": {k_: float(f"{e:.2e}") for k_, e in errors.items()}}), flush=True)
    return ok


ok = True
for dtype in [torch.bfloat16, torch.float16]:
    ok &= case("T64_K64_V64", 1, 64, 1, 1, 64, 64, dtype)
    ok &= case("T130_K128_V128", 2, 130, 2, 2, 128, 128, dtype)
    ok &= case("T65_H3_GVA2_K100_V48", 2, 65, 3, 6, 100, 48, dtype)
    ok &= case("T130_K16_V16_nol2", 1, 130, 1, 1, 16, 16, dtype, l2norm=False)
    ok &= case("T200_K64_V512", 1, 200, 1, 1, 64, 512, dtype)
    ok &= case("varlen_0_1_63_65", 1, 129, 2, 4, 32, 32, dtype, varlen=[0, 0, 1, 64, 129])
    ok &= case("strong_decay_g20", 1, 130, 2, 2, 64, 64, dtype, g_scale=20.0)
ok &= case("bf16_gates", 2, 70, 2, 2, 64, 64, torch.bfloat16, gate_dtype=torch.bfloat16)
if "--large" in sys.argv:
    ok &= case("B8_T2048_H16_K128_V128", 8, 2048, 16, 16, 128, 128, torch.bfloat16, large=True)
    ok &= case("B1_T4096_H2_K128_V256", 1, 4096, 2, 2, 128, 256, torch.bfloat16, large=True)
    lens = torch.randint(0, 300, (20,), generator=torch.Generator().manual_seed(7)).tolist()
    cu = [0]
    for n_ in lens:
        cu.append(cu[-1] + n_)
    ok &= case("varlen_20_segments", 1, cu[-1], 4, 4, 128, 128, torch.bfloat16, varlen=cu, large=True)
print(json.dumps({"all_ok": ok}))
sys.exit(0 if ok else 1)
