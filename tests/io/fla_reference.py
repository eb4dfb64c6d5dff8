"""Python side of the interop test (tests/io/test_pretrained.cpp).

A small, independent PyTorch reference of SPEC section 3 (the Comba causal LM, written
from the math in float64), and the two directions of travel:

  write DIR CASE   writes a model folder the way fla does (config.json with fla's
                   CombaConfig keys, model.safetensors with fla's tensor names, saved by
                   safetensors.torch.save_file), plus DIR/expected.safetensors holding
                   input_ids and the reference logits.
  check DIR        reads a folder written by C++ (safetensors.torch.load_file and
                   config.json's keys), recomputes logits for DIR/io.safetensors's
                   input_ids and compares them with the C++ logits stored there.

Exit status 77 means "skip": torch or safetensors is not importable here.
"""
import json
import math
import os
import sys

try:
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file, save_file
except ImportError as error:  # the C++ test turns this into GTEST_SKIP
    print(f"skip: {error}")
    sys.exit(77)


def l2norm(x):
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) + 1e-6)


def comba_recurrence(q, k, v, p, g, beta, scale):
    """S_t = exp(g_t) S_{t-1} + beta_t k_t (v_t - S_{t-1}^T p_t)^T, o_t = S_t^T (scale q_t)."""
    batch, steps, heads, _ = q.shape
    group = v.shape[2] // heads
    q, k, p = (l2norm(x).repeat_interleave(group, dim=2) for x in (q, k, p))
    state = q.new_zeros(batch, v.shape[2], q.shape[-1], v.shape[-1])
    out = []
    for t in range(steps):
        predicted = torch.einsum("bhkv,bhk->bhv", state, p[:, t])  # before the decay
        update = torch.einsum("bhk,bhv->bhkv", k[:, t], v[:, t] - predicted)
        state = torch.exp(g[:, t])[..., None, None] * state + beta[:, t][..., None, None] * update
        out.append(torch.einsum("bhkv,bhk->bhv", state, q[:, t] * scale))
    return torch.stack(out, dim=1)


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def short_conv(x, weight):
    # Causal depthwise convolution, weight [C, 1, K] (nn.Conv1d layout), then SiLU.
    steps, kernel = x.shape[1], weight.shape[-1]
    y = F.conv1d(x.transpose(1, 2), weight, padding=kernel - 1, groups=weight.shape[0])
    return F.silu(y[..., :steps].transpose(1, 2))


def sizes(cfg):
    heads = cfg["num_heads"]
    v_heads = cfg.get("num_v_heads") or heads
    head_v = int(round(cfg["head_dim"] * cfg["expand_v"]))
    inter = cfg.get("intermediate_size")
    if inter is None:
        ratio = cfg.get("hidden_ratio") or 4
        inter = 256 * ((int(cfg["hidden_size"] * ratio * 2 / 3) + 255) // 256)
    return heads, v_heads, head_v, inter


def gate_flag(cfg):
    return cfg.get("use_gate", cfg.get("use_output_gate", True))


def comba_layer(x, w, cfg):
    heads, v_heads, head_v, _ = sizes(cfg)
    batch, steps, _ = x.shape
    head_dim = cfg["head_dim"]
    proj = lambda name: x @ w[name + ".weight"].T
    if cfg.get("use_short_conv", True):
        q, k, v = (short_conv(proj(n + "_proj"), w[n + "_conv1d.weight"]) for n in "qkv")
    else:
        q, k, v = (F.silu(proj(n + "_proj")) for n in "qkv")
    q = q.view(batch, steps, heads, head_dim)
    k = k.view(batch, steps, heads, head_dim)
    v = v.view(batch, steps, v_heads, head_v)
    p = k * torch.sigmoid(w["decay"]).view(1, 1, heads, 1) if cfg.get("use_inner_decay", True) else k
    if cfg.get("use_output_correction", True):
        q = q - w["D"].view(1, 1, heads, 1) * p
    beta = torch.sigmoid(proj("b_proj"))
    g = -torch.exp(w["A_log"]) * F.softplus(proj("a_proj") + w["dt_bias"])
    o = comba_recurrence(q, k, v, p, g, beta, head_dim ** -0.5)
    o = rms_norm(o, w["o_norm.weight"], cfg["norm_eps"])
    if gate_flag(cfg):
        o = o * torch.sigmoid(proj("g_proj").view(batch, steps, v_heads, head_v))
    o = o.reshape(batch, steps, v_heads * head_v)
    return o @ w["o_proj.weight"].T


def forward(weights, cfg, input_ids):
    w = {name: t.double() for name, t in weights.items()}
    eps = cfg["norm_eps"]
    h = w["model.embeddings.weight"][input_ids]
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        layer = {n[len(pre) + 5:]: t for n, t in w.items() if n.startswith(pre + "attn.")}
        h = h + comba_layer(rms_norm(h, w[pre + "attn_norm.weight"], eps), layer, cfg)
        x = rms_norm(h, w[pre + "mlp_norm.weight"], eps)
        mlp = F.silu(x @ w[pre + "mlp.gate_proj.weight"].T) * (x @ w[pre + "mlp.up_proj.weight"].T)
        h = h + mlp @ w[pre + "mlp.down_proj.weight"].T
    h = rms_norm(h, w["model.norm.weight"], eps)
    head = w["model.embeddings.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return h @ head.T


CASES = {
    # GVA (4 value heads over 2 query heads), output gate, short convs, untied.
    "gva": dict(hidden_size=32, num_hidden_layers=2, num_heads=2, head_dim=8, num_v_heads=4, expand_v=1.5,
                use_gate=True, use_short_conv=True, tie_word_embeddings=False, intermediate_size=48),
    # No gate, no short conv, tied embeddings, derived MLP width, fla's extra keys.
    "tied": dict(hidden_size=24, num_hidden_layers=1, num_heads=3, head_dim=8, num_v_heads=None, expand_v=2,
                 use_gate=False, use_short_conv=False, tie_word_embeddings=True, intermediate_size=None,
                 hidden_ratio=2, fuse_norm=True, fuse_swiglu=True, fuse_cross_entropy=True, use_l2warp=False,
                 hidden_act="swish", attn=None, use_cache=True, transformers_version="4.53.0"),
}


def make_folder(out_dir, case):
    cfg = dict(model_type="comba", architectures=["CombaForCausalLM"], attn_mode="chunk", conv_size=4,
               use_output_correction=True, use_inner_decay=True, correction_factor=1.0,
               max_position_embeddings=2048, norm_eps=1e-6, pad_token_id=None, bos_token_id=1, eos_token_id=2,
               initializer_range=0.02, vocab_size=61, hidden_ratio=4, torch_dtype="float32")
    cfg.update(CASES[case])
    heads, v_heads, head_v, inter = sizes(cfg)
    hidden, key_dim, value_dim = cfg["hidden_size"], heads * cfg["head_dim"], v_heads * head_v
    gen = torch.Generator().manual_seed(7)
    rand = lambda *shape, std=0.2: torch.randn(*shape, generator=gen) * std
    w = {"model.embeddings.weight": rand(cfg["vocab_size"], hidden, std=1.0)}
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        w[pre + "attn_norm.weight"] = 1 + rand(hidden, std=0.1)
        a = pre + "attn."
        for name, out in (("q_proj", key_dim), ("k_proj", key_dim), ("v_proj", value_dim), ("a_proj", v_heads),
                          ("b_proj", v_heads), ("o_proj", None)):
            w[a + name + ".weight"] = rand(out, hidden) if out else rand(hidden, value_dim)
        if cfg["use_gate"]:
            w[a + "g_proj.weight"] = rand(value_dim, hidden)
        if cfg["use_short_conv"]:
            for name, ch in (("q_conv1d", key_dim), ("k_conv1d", key_dim), ("v_conv1d", value_dim)):
                w[a + name + ".weight"] = rand(ch, 1, cfg["conv_size"], std=0.5)
        w[a + "A_log"] = torch.empty(v_heads).uniform_(0, 16, generator=gen).log()
        dt = torch.exp(torch.empty(v_heads).uniform_(math.log(1e-3), math.log(0.1), generator=gen))
        w[a + "dt_bias"] = dt + torch.log(-torch.expm1(-dt))
        w[a + "D"] = 1 + rand(heads, std=0.3)
        w[a + "decay"] = rand(heads, std=1.0)
        w[a + "o_norm.weight"] = 1 + rand(head_v, std=0.1)
        w[pre + "mlp_norm.weight"] = 1 + rand(hidden, std=0.1)
        w[pre + "mlp.gate_proj.weight"] = rand(inter, hidden)
        w[pre + "mlp.up_proj.weight"] = rand(inter, hidden)
        w[pre + "mlp.down_proj.weight"] = rand(hidden, inter)
    w["model.norm.weight"] = 1 + rand(hidden, std=0.1)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = rand(cfg["vocab_size"], hidden)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    save_file({n: t.contiguous() for n, t in w.items()}, os.path.join(out_dir, "model.safetensors"),
              metadata={"format": "pt"})
    input_ids = torch.randint(0, cfg["vocab_size"], (2, 70), generator=gen)
    logits = forward(w, cfg, input_ids).float()
    save_file({"input_ids": input_ids, "logits": logits}, os.path.join(out_dir, "expected.safetensors"))


def check_folder(folder):
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    problems = []
    for key, expected in (("model_type", "comba"), ("architectures", ["CombaForCausalLM"])):
        if cfg.get(key) != expected:
            problems.append(f"config.json {key}: expected {expected!r}, got {cfg.get(key)!r}")
    for key in ("hidden_size", "num_hidden_layers", "num_heads", "head_dim", "num_v_heads", "expand_v", "conv_size",
                "use_short_conv", "use_gate", "use_output_correction", "use_inner_decay", "correction_factor",
                "hidden_ratio", "intermediate_size", "norm_eps", "vocab_size", "tie_word_embeddings",
                "bos_token_id", "eos_token_id"):
        if key not in cfg:
            problems.append(f"config.json lacks {key}")
    index = os.path.join(folder, "model.safetensors.index.json")
    weights = {}
    if os.path.exists(os.path.join(folder, "model.safetensors")):
        weights = load_file(os.path.join(folder, "model.safetensors"))
    else:
        with open(index) as f:
            for shard in sorted(set(json.load(f)["weight_map"].values())):
                weights.update(load_file(os.path.join(folder, shard)))
    if cfg["tie_word_embeddings"] and "lm_head.weight" in weights:
        problems.append("tied model stores lm_head.weight (fla/transformers do not)")
    io = load_file(os.path.join(folder, "io.safetensors"))
    ref = forward(weights, cfg, io["input_ids"])
    err = ((ref - io["logits"].double()).abs().max() / ref.abs().max()).item()
    if not err < 1e-4:
        problems.append(f"logits differ: max relative error {err:.3e}")
    print(json.dumps({"tensors": len(weights), "keys": sorted(cfg), "relative_error": err, "problems": problems}))
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "write":
        make_folder(sys.argv[2], sys.argv[3])
        sys.exit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "check":
        sys.exit(check_folder(sys.argv[2]))
    print(__doc__)
    sys.exit(2)
