"""torch.ops.comba from Python: load the library, call both operators, differentiate.

Compared with a naive fp64 token loop written here (SPEC section 1). Run by ctest as
`python test_torch_ops.py <path to libcomba_ops.so>`; exits 77 (ctest: skipped) when
torch cannot be imported, or 1 when COMBA_REQUIRE_PYTHON=1 says it must be.
"""
import os
import sys
import unittest

try:
    import torch
except ImportError as error:
    if os.environ.get("COMBA_REQUIRE_PYTHON", "") not in ("", "0"):
        print(f"COMBA_REQUIRE_PYTHON=1 but torch is not importable with {sys.executable}: {error}")
        sys.exit(1)
    print("torch is not importable with", sys.executable, "- skipping")
    sys.exit(77)

LIBRARY = os.environ.get("COMBA_OPS_LIBRARY", "")
OPS = ("chunk_comba", "fused_recurrent_comba")


def l2norm(x):
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) + 1e-6)


def naive_comba(q, k, v, p, g, beta, scale, initial_state, use_l2norm, cu_seqlens):
    """One token at a time; the correction reads the state before the decay."""
    B, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    group = HV // H
    if use_l2norm:
        q, k, p = l2norm(q), l2norm(k), l2norm(p)
    # Share each query/key head with its group of value heads.
    q, k, p = (x.repeat_interleave(group, dim=2) for x in (q, k, p))
    if cu_seqlens is None:
        segments = [(b, 0, T) for b in range(B)]
    else:
        bounds = cu_seqlens.tolist()
        segments = [(0, bounds[n], bounds[n + 1]) for n in range(len(bounds) - 1)]
    outputs = torch.zeros(B, T, HV, V, dtype=q.dtype)
    finals = []
    for n, (b, begin, end) in enumerate(segments):
        state = (initial_state[n] if initial_state is not None
                 else torch.zeros(HV, K, V, dtype=q.dtype))
        for t in range(begin, end):
            correction = torch.einsum("hkv,hk->hv", state, p[b, t])
            update = torch.einsum("hk,hv->hkv", k[b, t], v[b, t] - correction)
            state = torch.exp(g[b, t])[:, None, None] * state + beta[b, t][:, None, None] * update
            outputs[b, t] = torch.einsum("hkv,hk->hv", state, scale * q[b, t])
        finals.append(state)
    return outputs, torch.stack(finals)


def make_inputs(B, T, H, HV, K, V, N, seed):
    gen = torch.Generator().manual_seed(seed)
    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)
    return dict(q=randn(B, T, H, K), k=randn(B, T, H, K), v=randn(B, T, HV, V),
                p=randn(B, T, H, K), g=torch.nn.functional.logsigmoid(randn(B, T, HV) + 1.5),
                beta=torch.sigmoid(randn(B, T, HV)), initial_state=randn(N, HV, K, V) * 0.5)


class TorchOpsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not LIBRARY or not os.path.exists(LIBRARY):
            raise unittest.SkipTest("libcomba_ops.so not given (argument or COMBA_OPS_LIBRARY)")
        torch.ops.load_library(LIBRARY)

    def check_against_naive(self, op_name, cu_seqlens=None, B=2, T=9, split_length=None):
        N = B if cu_seqlens is None else len(cu_seqlens) - 1
        x = make_inputs(B, T, 2, 4, 5, 3, N, seed=len(op_name) + T)
        for value in x.values():
            value.requires_grad_(True)
        cu = None if cu_seqlens is None else torch.tensor(cu_seqlens, dtype=torch.int64)
        op = getattr(torch.ops.comba, op_name)
        o, final = op(x["q"], x["k"], x["v"], x["p"], x["g"], x["beta"], scale=0.4,
                      initial_state=x["initial_state"], output_final_state=True,
                      use_qk_l2norm_in_kernel=True, cu_seqlens=cu, split_length=split_length)
        ref_o, ref_final = naive_comba(x["q"], x["k"], x["v"], x["p"], x["g"], x["beta"], 0.4,
                                       x["initial_state"], True, cu)
        torch.testing.assert_close(o, ref_o, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(final, ref_final, rtol=1e-10, atol=1e-12)

        gen = torch.Generator().manual_seed(1)
        d_o = torch.randn(o.shape, generator=gen, dtype=torch.float64)
        d_final = torch.randn(final.shape, generator=gen, dtype=torch.float64)
        inputs = list(x.values())
        grads = torch.autograd.grad((o, final), inputs, (d_o, d_final))
        ref_grads = torch.autograd.grad((ref_o, ref_final), inputs, (d_o, d_final))
        for name, got, want in zip(x.keys(), grads, ref_grads):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=f"d{name}")

    def test_dense_matches_naive_forward_and_gradients(self):
        for op_name in OPS:
            with self.subTest(op=op_name):
                self.check_against_naive(op_name)

    def test_varlen_matches_naive_forward_and_gradients(self):
        for op_name in OPS:
            with self.subTest(op=op_name):
                self.check_against_naive(op_name, cu_seqlens=[0, 0, 1, 5, 9], B=1, T=9)

    def test_split_length_cuts_sequences_into_segments(self):
        # chunk_comba only (fused_recurrent_comba ignores it): 150 tokens in segments of 64,
        # dense and packed (a 1-token and a 65-token sequence among them).
        self.check_against_naive("chunk_comba", T=150, split_length=64)
        self.check_against_naive("chunk_comba", cu_seqlens=[0, 1, 66, 150], B=1, T=150, split_length=64)
        with self.assertRaisesRegex(RuntimeError, "`split_length`.*multiple of 64"):
            x = make_inputs(1, 4, 1, 1, 3, 2, 1, seed=7)
            torch.ops.comba.chunk_comba(x["q"], x["k"], x["v"], x["p"], x["g"], x["beta"], split_length=10)

    def test_defaults_p_is_k_and_beta_is_one(self):
        x = make_inputs(1, 4, 1, 2, 3, 2, 1, seed=3)
        for op_name in OPS:
            with self.subTest(op=op_name):
                op = getattr(torch.ops.comba, op_name)
                o, _ = op(x["q"], x["k"], x["v"], None, x["g"], None, output_final_state=True)
                ref_o, _ = naive_comba(x["q"], x["k"], x["v"], x["k"], x["g"],
                                       torch.ones_like(x["beta"]), 3 ** -0.5, None, False, None)
                torch.testing.assert_close(o, ref_o, rtol=1e-10, atol=1e-12)

    def test_reference_path_option(self):
        x = make_inputs(1, 5, 1, 2, 3, 2, 1, seed=6)
        for op_name in OPS:
            with self.subTest(op=op_name):
                op = getattr(torch.ops.comba, op_name)
                o, _ = op(x["q"], x["k"], x["v"], x["p"], x["g"], x["beta"],
                          use_reference_path=True)
                ref_o, _ = naive_comba(x["q"], x["k"], x["v"], x["p"], x["g"], x["beta"],
                                       3 ** -0.5, None, False, None)
                torch.testing.assert_close(o, ref_o, rtol=1e-10, atol=1e-12)

    def test_torch_autograd_gradcheck(self):
        x = make_inputs(1, 3, 1, 2, 2, 2, 1, seed=4)
        for op_name in OPS:
            op = getattr(torch.ops.comba, op_name)
            def fn(q, k, v, p, g, beta, h0):
                return op(q, k, v, p, g, beta, initial_state=h0, output_final_state=True,
                          use_qk_l2norm_in_kernel=True)
            inputs = tuple(value.detach().requires_grad_(True) for value in x.values())
            with self.subTest(op=op_name):
                self.assertTrue(torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-8))

    def test_bad_argument_raises_with_its_name(self):
        x = make_inputs(1, 4, 2, 3, 3, 2, 1, seed=5)  # HV = 3 is not a multiple of H = 2
        with self.assertRaisesRegex(RuntimeError, "`v`.*multiple of H = 2"):
            torch.ops.comba.chunk_comba(x["q"], x["k"], x["v"], x["p"], x["g"], x["beta"])


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        LIBRARY = sys.argv.pop(1)
    unittest.main(verbosity=2)
