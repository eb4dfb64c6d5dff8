#!/usr/bin/env python3
"""Training-step benchmark: comba-train in benchmark mode (random tokens, no eval, no
checkpoints) over context lengths and memory policies; one JSON line per case with model,
context length, tokens/s, step ms, peak GiB and MFU.

MFU = achieved FLOP/s / peak bf16 dense FLOP/s of the GPU (--peak-tflops, H200/H100 SXM:
989). FLOPs per token: 6 x parameters (the GEMMs of forward and backward, the tied head
counted once) plus the Comba operator's chunk-form work, 3 x its forward per token, with
the forward per layer and value head = 2 K V x 4 (reading the state with q and p, the
state update, W S) + 2 C (2 K + 2 V) (the in-chunk products, chunk C = 64).

Usage: python3 benchmarks/train_bench.py BUILD_DIR [--config configs/comba-340m.yaml]
       [--cases 2048x8,8192x2,16384x1,32768x1p4] [--recompute none,block] [--steps 12]
A case TxB runs micro-batches of B sequences of T tokens; a trailing pN packs N documents
of equal length into each row (cu_seqlens). Logs go to $OUT (or ./gpu-logs).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile


def comba_flops_per_token(model, seq_len=2048):
    """Operator FLOPs per token beyond 6 x parameters: the Comba chunk form in Comba layers
    and, in a hybrid's attention layers (model["attn"]), the causal QK^T and PV products,
    forward and backward, over the keys a query sees (min(seq_len, window))."""
    k = model["head_dim"]
    v = int(model["head_dim"] * model.get("expand_v", 2.0))
    hv = model.get("num_v_heads") or model["num_heads"]
    c = 64
    fwd = 2 * k * v * 4 + 2 * c * (2 * k + 2 * v)
    attn = model.get("attn") or {}
    attn_layers = len(attn.get("layers", []))
    comba_layers = model["num_hidden_layers"] - attn_layers
    flops = 3 * fwd * hv * comba_layers
    if attn_layers:
        width = attn["num_heads"] * (model["hidden_size"] // attn["num_heads"])
        keys = min(seq_len, attn.get("window_size") or seq_len)
        flops += 6 * attn_layers * width * keys
    return flops


def _scalar(text):
    try:
        return float(text) if "." in text or "e" in text else int(text)
    except ValueError:
        return text


def read_model(config_path):
    """The `model:` mapping of a config (scalars, plus the `attn:` mapping of a hybrid with
    its `layers` list), read without a YAML library."""
    model, inside, attn = {}, False, None
    for line in open(config_path):
        line = line.split("#", 1)[0].rstrip()
        if re.match(r"^model:", line):
            inside = True
            continue
        if not inside or not line.strip():
            continue
        if re.match(r"^\S", line):
            break
        m = re.match(r"^( +)(\w+):\s*(.*)$", line)
        if not m:
            continue
        indent, key, value = len(m.group(1)), m.group(2), m.group(3).strip()
        if indent <= 2:
            attn = None
            if key == "attn" and not value:
                attn = model["attn"] = {}
            elif value:
                model[key] = _scalar(value)
        elif attn is not None and value:
            if value.startswith("["):
                attn[key] = [_scalar(x.strip()) for x in value.strip("[]").split(",") if x.strip()]
            else:
                attn[key] = None if value == "null" else _scalar(value)
    return model


def run_case(build_dir, config, case, recompute, steps=12, warmup=4, accum=1, peak_tflops=989.0,
             logs=None, split_length=0):
    """One comba-train benchmark run; returns its JSON line as a dict."""
    logs = logs or os.environ.get("OUT", "gpu-logs")
    os.makedirs(logs, exist_ok=True)
    m = re.fullmatch(r"(\d+)x(\d+)(?:p(\d+))?", case)
    if not m:
        sys.exit(f"--cases: expected TxB or TxBpN, got {case!r}")
    seq_len, micro, docs = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    run_dir = tempfile.mkdtemp(prefix="comba_train_bench_")
    sets = {"data.kind": "random", "train.benchmark": "true", "train.benchmark_warmup": warmup,
            "train.max_steps": steps, "logging.interval": steps, "logging.progress_bar": "false",
            "batch.seq_len": seq_len, "batch.micro_batch_size": micro,
            "batch.grad_accum_steps": accum, "train.recompute": recompute,
            "train.split_length": split_length, "logging.run_dir": run_dir}
    if docs:
        sets["data.pack_documents"] = "true"
        sets["data.random_doc_len"] = seq_len * micro // docs
    cmd = [os.path.join(build_dir, "bin", "comba-train"), config, "--no-resume"]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    name = f"{case}_{recompute}" + (f"_split{split_length}" if split_length else "")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    with open(os.path.join(logs, f"train_{name}.log"), "w") as f:
        f.write(proc.stdout + proc.stderr)
    line = {"case": name, "config": os.path.basename(config), "seq_len": seq_len,
            "micro_batch": micro, "docs_per_row": docs, "recompute": recompute,
            "split_length": split_length}
    summary = None
    for out_line in reversed(proc.stdout.splitlines()):
        if out_line.startswith("{") and '"summary"' in out_line:
            summary = json.loads(out_line)
            break
    params = re.search(r"\| (\d+) parameters \|", proc.stdout + proc.stderr)
    if proc.returncode != 0 or summary is None:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        line.update({"error": f"exit {proc.returncode}", "tail": tail})
        return line
    tps = summary["tokens_per_s"]
    n = int(params.group(1)) if params else 0
    flops = 6 * n + comba_flops_per_token(read_model(config), seq_len // max(docs, 1))
    line.update({"tokens_per_s": round(tps, 1), "step_ms": round(summary["step_time_ms"], 2),
                 "peak_gib": round(summary["peak_memory_gib"], 2), "parameters": n,
                 "flops_per_token": flops, "mfu": round(flops * tps / (peak_tflops * 1e12), 4)})
    return line


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build_dir")
    ap.add_argument("--config", default="configs/comba-340m.yaml")
    ap.add_argument("--cases", default="2048x8,8192x2,16384x1,32768x1p4")
    ap.add_argument("--recompute", default="none,block")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--accum", type=int, default=1, help="micro-batches per optimizer step")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    args = ap.parse_args()
    status = 0
    for case in args.cases.split(","):
        for recompute in args.recompute.split(","):
            line = run_case(args.build_dir, args.config, case, recompute, steps=args.steps,
                            warmup=args.warmup, accum=args.accum, peak_tflops=args.peak_tflops)
            status |= "error" in line
            print(json.dumps(line), flush=True)
    sys.exit(1 if status else 0)


if __name__ == "__main__":
    main()
