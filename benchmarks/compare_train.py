#!/usr/bin/env python3
"""Training step side by side, in one GPU call: ours (comba-train, through train_bench.py),
fla's CombaForCausalLM and a Llama-style Transformer with SDPA attention, on the same
shapes and random tokens. One JSON line per (model, case): tokens/s, step ms, peak GiB,
parameters, MFU (FLOP formula in train_bench.py for ours and fla; for the Transformer
6 x parameters + 6 x layers x hidden x T_doc per token: the causal QK^T and PV products,
forward and backward).

The anchors run as their users run them: bf16 weights, torch AdamW(fused=True), fla's fused
cross entropy; ours runs the config's precision (bf16 compute, fp32 master weights and
AdamW state). Each anchor case runs in a fresh process so that peak memory is its own.
fla and transformers come from wheels (the GPU machine has no network):
    pip download flash-linear-attention==0.6.0 --python-version 3.12 --only-binary=:all: \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl
    pip install --no-index --find-links .whl flash-linear-attention==0.6.0   # on the GPU machine

Usage: python3 benchmarks/compare_train.py BUILD_DIR [--models ours,fla,transformer]
       [--cases 2048x8,8192x2,16384x1,32768x1p4] [--recompute none] [--split-length 0]
       [--steps 12] [--warmup 4]
A case TxB is B rows of T tokens; pN packs N equal documents into each row (cu_seqlens for
ours and fla; the Transformer attends within each document).
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train_bench  # noqa: E402


def parse_case(case):
    m = re.fullmatch(r"(\d+)x(\d+)(?:p(\d+))?", case)
    if not m:
        sys.exit(f"--cases: expected TxB or TxBpN, got {case!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 1)


# --- the anchors (run in a worker process) ---------------------------------------------

def build_fla(model_cfg):
    from fla.models import CombaConfig, CombaForCausalLM
    cfg = CombaConfig(
        hidden_size=model_cfg["hidden_size"], num_hidden_layers=model_cfg["num_hidden_layers"],
        num_heads=model_cfg["num_heads"], head_dim=model_cfg["head_dim"],
        expand_v=model_cfg.get("expand_v", 2.0), conv_size=model_cfg.get("conv_size", 4),
        use_short_conv=True, use_output_gate=True, use_output_correction=True,
        use_inner_decay=True, hidden_ratio=model_cfg.get("hidden_ratio", 4),
        vocab_size=model_cfg["vocab_size"], tie_word_embeddings=True,
        fuse_cross_entropy=True, fuse_norm=True, fuse_swiglu=True, use_cache=False)
    return CombaForCausalLM(cfg)


class TransformerLM:
    """Llama-style decoder: RMSNorm, RoPE, SDPA causal attention, SwiGLU, tied head."""

    @staticmethod
    def build(model_cfg, heads=16):
        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        d, layers, vocab = model_cfg["hidden_size"], model_cfg["num_hidden_layers"], model_cfg["vocab_size"]
        inter = 256 * math.ceil(int(2 * model_cfg.get("hidden_ratio", 4) * d / 3) / 256)
        hd = d // heads

        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.n1, self.n2 = nn.RMSNorm(d, eps=1e-6), nn.RMSNorm(d, eps=1e-6)
                self.qkv = nn.Linear(d, 3 * d, bias=False)
                self.o = nn.Linear(d, d, bias=False)
                self.gu = nn.Linear(d, 2 * inter, bias=False)
                self.down = nn.Linear(inter, d, bias=False)

            def forward(self, x, cos, sin, doc_len):
                b, t, _ = x.shape
                q, k, v = self.qkv(self.n1(x)).view(b, t, 3, heads, hd).unbind(2)

                def rope(z):
                    z1, z2 = z[..., : hd // 2], z[..., hd // 2:]
                    return torch.cat([z1 * cos - z2 * sin, z2 * cos + z1 * sin], -1)
                q, k = rope(q), rope(k)
                # documents of equal length: attend within each one
                n = t // doc_len
                q, k, v = (z.reshape(b * n, doc_len, heads, hd).transpose(1, 2) for z in (q, k, v))
                a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                x = x + self.o(a.transpose(1, 2).reshape(b, t, d))
                g, u = self.gu(self.n2(x)).chunk(2, -1)
                return x + self.down(F.silu(g) * u)

        class LM(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = nn.Embedding(vocab, d)
                self.blocks = nn.ModuleList(Block() for _ in range(layers))
                self.norm = nn.RMSNorm(d, eps=1e-6)
                for p in self.parameters():
                    if p.dim() == 2:
                        nn.init.normal_(p, std=0.02)

            def forward(self, ids, labels, doc_len):
                t = ids.shape[1]
                pos = torch.arange(doc_len, device=ids.device).repeat(t // doc_len).float()
                inv = 1.0 / (10000 ** (torch.arange(0, hd // 2, device=ids.device).float() / (hd // 2)))
                ang = (pos[:, None] * inv[None]).to(torch.bfloat16)
                cos, sin = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]
                x = self.emb(ids)
                for blk in self.blocks:
                    x = blk(x, cos, sin, doc_len)
                logits = F.linear(self.norm(x), self.emb.weight)
                return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten())

        return LM(), layers, d

    @staticmethod
    def attention_flops_per_token(layers, d, doc_len):
        # causal: QK^T and PV each 2 d (doc_len / 2) per token forward; backward twice that
        return 6 * layers * d * doc_len


def worker(args):
    import torch
    seq_len, micro, docs = parse_case(args.case)
    model_cfg = train_bench.read_model(args.config)
    torch.manual_seed(0)
    dev = torch.device("cuda")
    extra_flops = 0
    note = None
    if args.worker == "fla":
        # fla 0.6 refuses gated chunk backward on Hopper with Triton in [3.4, 3.7.1) (its
        # issue #640: wrong gradients there). The kernels run the same work either way, so
        # for timing only the guard is lifted, and the line says so.
        import fla.ops.common.chunk_o as chunk_o
        if chunk_o.IS_NVIDIA_HOPPER and chunk_o.TRITON_ABOVE_3_4_0 and not chunk_o.TRITON_ABOVE_3_7_1:
            import triton
            chunk_o.TRITON_ABOVE_3_7_1 = True
            note = f"fla refuses gated chunk backward with Triton {triton.__version__} on Hopper (fla #640); guard lifted for timing only"
        model = build_fla(model_cfg)
        extra_flops = train_bench.comba_flops_per_token(model_cfg)
    else:
        model, layers, d = TransformerLM.build(model_cfg)
        extra_flops = TransformerLM.attention_flops_per_token(layers, d, seq_len // docs)
    model = model.to(dev, torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, betas=(0.9, 0.95), fused=True)
    vocab = model_cfg["vocab_size"]
    ids = torch.randint(0, vocab, (micro, seq_len), device=dev)
    doc_len = seq_len // docs
    cu = None
    if docs > 1:
        if micro != 1:
            sys.exit("packed cases take one row (TxBpN with B = 1)")
        cu = torch.arange(0, seq_len + 1, doc_len, device=dev, dtype=torch.int32)

    def step():
        if args.worker == "fla":
            kw = {"cu_seqlens": cu} if cu is not None else {}
            loss = model(input_ids=ids, labels=ids, **kw).loss
        else:
            loss = model(ids, ids, doc_len)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    torch.cuda.reset_peak_memory_stats()
    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    torch.cuda.synchronize()
    step_s = (time.perf_counter() - t0) / args.steps
    tps = micro * seq_len / step_s
    flops = 6 * params + extra_flops
    print(json.dumps({"model": args.worker, "case": args.case, "seq_len": seq_len, "micro_batch": micro,
                      "docs_per_row": docs if docs > 1 else 0, "weights": "bf16",
                      "tokens_per_s": round(tps, 1), "step_ms": round(step_s * 1e3, 2),
                      "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                      "parameters": params, "flops_per_token": flops,
                      "mfu": round(flops * tps / (args.peak_tflops * 1e12), 4),
                      "loss": round(float(loss), 3), **({"note": note} if note else {})}), flush=True)


def run_anchor(name, case, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--case", case,
           "--config", args.config, "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--peak-tflops", str(args.peak_tflops)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-4:]
    return {"model": name, "case": case, "error": f"exit {proc.returncode}", "tail": tail}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build_dir", nargs="?")
    ap.add_argument("--config", default=os.path.join(HERE, "..", "configs", "comba-340m.yaml"))
    ap.add_argument("--models", default="ours,fla,transformer")
    ap.add_argument("--cases", default="2048x8,8192x2,16384x1,32768x1p4")
    ap.add_argument("--recompute", default="none")
    ap.add_argument("--split-length", default="0",
                    help="ours: comma list of train.split_length values (0: the operator's choice)")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--worker", choices=["fla", "transformer"], help=argparse.SUPPRESS)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    status = 0
    for case in args.cases.split(","):
        parse_case(case)
        for name in args.models.split(","):
            if name == "ours":
                if not args.build_dir:
                    sys.exit("BUILD_DIR is needed for the `ours` model")
                for recompute in args.recompute.split(","):
                    for split in args.split_length.split(","):
                        line = train_bench.run_case(args.build_dir, args.config, case, recompute,
                                                    steps=args.steps, warmup=args.warmup, accum=1,
                                                    peak_tflops=args.peak_tflops, split_length=int(split))
                        line["model"] = "ours"
                        print(json.dumps(line), flush=True)
                        status |= "error" in line
            else:
                line = run_anchor(name, case, args)
                print(json.dumps(line), flush=True)
                status |= "error" in line
    sys.exit(1 if status else 0)


if __name__ == "__main__":
    main()
