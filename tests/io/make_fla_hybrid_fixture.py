"""Makes tests/data/fla_hybrid/: a tiny hybrid model saved by fla itself, and fla's logits.

Run with fla and transformers installed, on a CUDA machine or, through Triton's
interpreter, on the CPU (fla's kernels are Triton):
    python tests/io/make_fla_hybrid_fixture.py OUT_DIR
    TRITON_INTERPRET=1 python tests/io/make_fla_hybrid_fixture.py OUT_DIR   # no GPU

fla's Attention layer calls the flash-attn package, which has no wheel; a stand-in module
(flash_attn_func / flash_attn_varlen_func written with an explicit mask and softmax in
fp32) is put on the path instead, so fla's own code supplies everything else the fixture
checks: the config keys, parameter names and shapes, RoPE and GQA layout, the window
convention and the Comba layers.

Writes OUT_DIR/config.json + model.safetensors (save_pretrained) and
OUT_DIR/expected.safetensors with input_ids [B, T] (int64) and logits [B, T, V] (fp32), and
packed_input_ids [1, T], packed_cu_seqlens [N + 1] (int64), packed_logits [1, T, V] for
three documents packed in one row.
"""
import os
import sys
import tempfile
import textwrap

STAND_IN = '''
import torch


def _attend(q, k, v, causal, window_size):
    # q [Tq, H, D], k/v [Tk, HKV, D]; causal aligned bottom-right as flash-attn does.
    tq, heads, dim = q.shape
    tk, kv_heads = k.shape[0], k.shape[1]
    k = k.repeat_interleave(heads // kv_heads, dim=1)
    v = v.repeat_interleave(heads // kv_heads, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q.float(), k.float()) / dim ** 0.5
    qi = torch.arange(tq, device=q.device)[:, None] + (tk - tq)
    ki = torch.arange(tk, device=q.device)[None, :]
    allowed = torch.ones(tq, tk, dtype=torch.bool, device=q.device)
    if causal:
        allowed &= ki <= qi
    left = window_size[0]
    if left >= 0:
        allowed &= ki >= qi - left
    scores = scores.masked_fill(~allowed, float("-inf"))
    out = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v.float())
    return out.to(q.dtype)


def flash_attn_func(q, k, v, causal=False, window_size=(-1, -1), **kwargs):
    return torch.stack([_attend(q[b], k[b], v[b], causal, window_size) for b in range(q.shape[0])])


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None,
                           causal=False, window_size=(-1, -1), **kwargs):
    out = torch.empty_like(q)
    for i in range(len(cu_seqlens_q) - 1):
        qs, qe = int(cu_seqlens_q[i]), int(cu_seqlens_q[i + 1])
        ks, ke = int(cu_seqlens_k[i]), int(cu_seqlens_k[i + 1])
        out[qs:qe] = _attend(q[qs:qe], k[ks:ke], v[ks:ke], causal, window_size)
    return out
'''


def main(out_dir):
    stand_in_dir = tempfile.mkdtemp()
    os.makedirs(os.path.join(stand_in_dir, "flash_attn"))
    with open(os.path.join(stand_in_dir, "flash_attn", "__init__.py"), "w") as f:
        f.write(textwrap.dedent(STAND_IN))
    sys.path.insert(0, stand_in_dir)

    import torch
    if os.environ.get("TRITON_INTERPRET") == "1":
        # The interpreter has no device to time autotuning candidates on: take any (they
        # compute the same numbers).
        from triton.runtime import autotuner
        autotuner.Autotuner.do_bench = property(lambda self: lambda fn, quantiles=None: [1.0, 1.0, 1.0])
        # Loop bounds loaded from memory arrive as one-element arrays, which the
        # interpreter's __index__ refuses to turn into an int.
        from triton.runtime import interpreter
        patch_tensor = interpreter._patch_lang_tensor

        def patch_tensor_with_index(tensor, scope):
            patch_tensor(tensor, scope)
            scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

        interpreter._patch_lang_tensor = patch_tensor_with_index
    from fla.models import CombaConfig, CombaForCausalLM
    from safetensors.torch import save_file

    torch.manual_seed(20)
    attn = [
        # Layer 1: grouped-query heads, qkv bias, a window shorter than the sequence, another
        # RoPE base and a key fla does not know (kept on load and save).
        {"layers": [1], "num_heads": 4, "num_kv_heads": 2, "qkv_bias": True, "window_size": 16,
         "rope_theta": 5000.0, "note": "kept"},
        # Layer 3: full causal attention with fla's defaults.
        {"layers": [3], "num_heads": 2},
    ]
    config = CombaConfig(hidden_size=64, num_hidden_layers=4, num_heads=2, head_dim=32, expand_v=1,
                         vocab_size=96, intermediate_size=64, attn=attn, fuse_norm=False, fuse_swiglu=False,
                         fuse_cross_entropy=False, max_position_embeddings=256)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = CombaForCausalLM(config).to(device).float().eval()
    with torch.no_grad():
        # fla's initialisation (std 0.02) gives nearly uniform logits; larger weights make
        # the argmax comparison meaningful. Norm weights stay near 1.
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.12)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.1)
            elif "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    model.save_pretrained(out_dir, safe_serialization=True)

    batch, steps = 2, 48  # at most 64: fla runs its fused recurrent kernel in eval
    input_ids = torch.randint(0, config.vocab_size, (batch, steps), device=device)
    with torch.no_grad():
        logits = model(input_ids=input_ids, use_cache=False).logits.float()
        # Three documents packed in one row: fla restarts RoPE positions and the Comba
        # states at every cu_seqlens boundary.
        cu_seqlens = torch.tensor([0, 7, 25, 40], dtype=torch.int32, device=device)
        packed_ids = torch.randint(0, config.vocab_size, (1, 40), device=device)
        packed_logits = model(input_ids=packed_ids, cu_seqlens=cu_seqlens, use_cache=False).logits.float()
    tensors = {"input_ids": input_ids, "logits": logits, "packed_input_ids": packed_ids,
               "packed_cu_seqlens": cu_seqlens.long(), "packed_logits": packed_logits}
    save_file({name: t.cpu().contiguous() for name, t in tensors.items()},
              os.path.join(out_dir, "expected.safetensors"))
    names = sorted(n for n, _ in model.named_parameters())
    print("saved", out_dir, "parameters:", len(names), "logits std", float(logits.std()))
    print("\n".join(n for n in names if ".attn." in n and "layers.1" in n))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_fla_hybrid_fixture.py OUT_DIR")
    main(sys.argv[1])
