"""Kernel workbench check: every CUDA path of torch.ops.comba against the fp64 CPU
reference on fresh random inputs, over dtypes and odd shapes. Prints one JSON line per
case with the worst norm-relative error per tensor; exits non-zero on a failure.
Usage: python benchmarks/check_cuda.py BUILD_DIR"""
import json
import sys

import torch

torch.ops.load_library(f"{sys.argv[1]}/ops/libcomba_ops.so")
ops = torch.ops.comba
TOL = {torch.float32: 1e-5, torch.bfloat16: 1.5e-2, torch.float16: 3e-3}


def rel(x, ref):
    return ((x.double() - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def case(name, B, T, H, HV, K, V, dtype, l2norm, varlen=None, gate_dtype=torch.float32):
    gen = torch.Generator().manual_seed(hash(name) % 2**31)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)
    q, k, p = r(B, T, H, K), r(B, T, H, K), r(B, T, H, K)
    if not l2norm:
        q, k, p = q / K**0.5, k / K**0.5, p / K**0.5
    v = r(B, T, HV, V)
    g = torch.nn.functional.logsigmoid(r(B, T, HV) + 2)
    beta = torch.rand(B, T, HV, generator=gen, dtype=torch.float64)
    cu = torch.tensor(varlen) if varlen else None
    n = len(varlen) - 1 if varlen else B
    h0 = r(n, HV, K, V)
    # Reference on the inputs rounded to the tested dtype, in fp64 on the CPU.
    lo = lambda x: x.to(dtype).double()
    ref_o, ref_s = ops.chunk_comba(lo(q), lo(k), lo(v), lo(p), g.to(gate_dtype).double(),
                                   beta.to(gate_dtype).double(), None, h0, True, l2norm, cu)
    dev = lambda x, dt=dtype: x.to(dt).cuda()
    out = {}
    for fn_name in ["fused_recurrent_comba", "chunk_comba"]:
        fn = getattr(ops, fn_name)
        o, s = fn(dev(q), dev(k), dev(v), dev(p), dev(g, gate_dtype), dev(beta, gate_dtype), None,
                  h0.float().cuda(), True, l2norm, cu.cuda() if cu is not None else None)
        torch.cuda.synchronize()
        assert o.dtype == dtype and s.dtype == torch.float32
        out[fn_name] = {"o": rel(o.cpu(), ref_o), "state": rel(s.cpu(), ref_s)}
    ok = all(e <= TOL[dtype] and e == e for d in out.values() for e in d.values())
    print(json.dumps({"case": name, "dtype": str(dtype).split(".")[-1], "ok": ok, "errors": out}))
    return ok


cases = [
    ("decode_B4_H16_K128", 4, 1, 16, 16, 128, 128, True),
    ("T65_H3_GVA2_K100_V48", 2, 65, 3, 6, 100, 48, True),
    ("T130_K16_V16_nol2", 1, 130, 1, 1, 16, 16, False),
    ("T64_K256_V64", 1, 64, 2, 2, 256, 64, True),
    ("T200_K64_V512", 1, 200, 1, 1, 64, 512, True),
]
ok = True
for dtype in [torch.float32, torch.bfloat16, torch.float16]:
    for c in cases:
        ok &= case(*c[:-1], dtype=dtype, l2norm=c[-1])
    ok &= case("varlen_0_1_63_65", 1, 129, 2, 4, 32, 32, dtype, True, varlen=[0, 0, 1, 64, 129])
ok &= case("bf16_gates", 2, 70, 2, 2, 64, 64, torch.bfloat16, True, gate_dtype=torch.bfloat16)
print(json.dumps({"all_ok": ok}))
sys.exit(0 if ok else 1)
