"""The engine's numpy reference steps against brute force and PyTorch, and the native backend
(through ``bingnn.engine._ops``) against the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bingnn.engine import _ops
from bingnn.engine import reference as ref
from bingnn.nn.knn import knn as torch_knn


def pm1(bits: np.ndarray) -> np.ndarray:
    return np.where(bits, 1.0, -1.0).astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(lead=st.lists(st.integers(0, 4), min_size=0, max_size=2), c=st.integers(1, 200),
       seed=st.integers(0, 2**16))
def test_pack_layout_and_roundtrip(lead: list[int], c: int, seed: int) -> None:
    bits = np.random.default_rng(seed).random((*lead, c)) < 0.5
    packed = ref.pack_bits(bits)
    assert packed.dtype == np.uint64 and packed.shape == (*lead, (c + 63) // 64)
    np.testing.assert_array_equal(ref.unpack_bits(packed, c), bits)
    # Element j sits in bit j % 64 of word j // 64; padding bits are zero.
    flat_bits, flat = bits.reshape(-1, c), packed.reshape(-1, packed.shape[-1])
    for r in range(min(3, flat.shape[0])):
        want = [sum(int(flat_bits[r, j]) << (j - 64 * w)
                    for j in range(64 * w, min(c, 64 * w + 64)))
                for w in range(flat.shape[1])]
        assert [int(v) for v in flat[r]] == want
    if _ops.has("pack_signs") and bits.size:
        from bingnn.engine import kernels

        np.testing.assert_array_equal(kernels.pack_signs(pm1(bits)), packed)


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 9), n=st.integers(1, 9), c=st.integers(1, 150), seed=st.integers(0, 999))
def test_binary_gemm_equals_pm1_matmul(m: int, n: int, c: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.random((m, c)) < 0.5, rng.random((n, c)) < 0.5
    want = (pm1(a) @ pm1(b).T).astype(np.int32)
    got = ref.binary_gemm(ref.pack_bits(a), ref.pack_bits(b), c)
    np.testing.assert_array_equal(got, want)
    for native in (True, False):
        np.testing.assert_array_equal(
            _ops.binary_gemm(ref.pack_bits(a), ref.pack_bits(b), c, native, 1), want)


@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 3), n=st.integers(1, 30), c=st.integers(1, 70), seed=st.integers(0, 999))
def test_hamming_knn_matches_brute_force_with_ties(b: int, n: int, c: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, n + 1))
    # Few distinct rows: many duplicate points and equal distances.
    bits = rng.random((b, max(1, n // 3), c)) < 0.5
    bits = bits[:, rng.integers(0, bits.shape[1], n)]
    x = ref.pack_bits(bits)
    want = torch_knn(torch.from_numpy(pm1(bits)), k, "hamming").numpy()
    # Brute force: sort (distance, index) pairs.
    d = (bits[:, :, None, :] != bits[:, None, :, :]).sum(-1)
    brute = np.stack([[sorted(range(n), key=lambda j, i=i, s=s: (d[s, i, j], j))[:k]
                       for i in range(n)] for s in range(b)])
    np.testing.assert_array_equal(want, brute)
    np.testing.assert_array_equal(ref.hamming_knn(x, k), brute)
    np.testing.assert_array_equal(_ops.hamming_knn(x, k, True, 1), brute)


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 3), n=st.integers(1, 40), seed=st.integers(0, 999))
def test_l2_knn_matches_torch_with_ties(b: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, n + 1))
    x = (rng.integers(-3, 4, size=(b, n, 3)) / 4.0).astype(np.float32)  # many ties
    want = torch_knn(torch.from_numpy(x), k, "l2").numpy()
    np.testing.assert_array_equal(ref.l2_knn(x, k), want)
    np.testing.assert_array_equal(_ops.l2_knn(x, k, True, 1), want)
    y = rng.normal(size=(b, n, 3)).astype(np.float32)
    np.testing.assert_array_equal(_ops.l2_knn(y, k, True, None),
                                  torch_knn(torch.from_numpy(y), k, "l2").numpy())


def test_predicate_semantics() -> None:
    v = np.arange(-10, 11, dtype=np.int32)[:, None]
    lo, hi = np.array([-3], np.int32), np.array([4], np.int32)
    outside = ref.predicate(v, lo, hi, np.array([0], np.uint8))[:, 0]
    np.testing.assert_array_equal(outside, (v[:, 0] <= -3) | (v[:, 0] >= 4))
    inside = ref.predicate(v, lo, hi, np.array([1], np.uint8))[:, 0]
    np.testing.assert_array_equal(inside, (v[:, 0] > -3) & (v[:, 0] < 4))


@pytest.mark.parametrize("negated", [False, True])
@pytest.mark.parametrize("c_in,c_out", [(64, 64), (16, 40), (100, 130)])
def test_xor_edge_conv_backends_agree(negated: bool, c_in: int, c_out: int) -> None:
    rng = np.random.default_rng(c_in + c_out + negated)
    b, n, k = 2, 33, 6
    x = ref.pack_bits(rng.random((b, n, c_in)) < 0.5)
    w_rel = ref.pack_bits(rng.random((c_out, c_in)) < 0.5)
    w_self = ref.pack_bits(rng.random((c_out, c_in)) < 0.5)
    lo = rng.integers(-2 * c_in, 0, c_out).astype(np.int32)
    hi = rng.integers(0, 2 * c_in, c_out).astype(np.int32)
    neg = (rng.random(c_out) < 0.5).astype(np.uint8) if negated else np.zeros(c_out, np.uint8)
    out_neg = (rng.random(c_out) < 0.3).astype(np.uint8)
    got, idx = _ops.xor_edge_conv_knn(x, k, w_rel, w_self, lo, hi, neg, out_neg, c_in, True, 1)
    want, idx_ref = _ops.xor_edge_conv_knn(x, k, w_rel, w_self, lo, hi, neg, out_neg, c_in,
                                           False, 1)
    np.testing.assert_array_equal(idx, idx_ref)
    np.testing.assert_array_equal(got, want)
    # And the reference against +-1 arithmetic on unpacked values.
    xs = pm1(ref.unpack_bits(x, c_in))
    nb = ref.gather(xs, idx_ref)
    e = np.concatenate([-nb * xs[:, :, None], np.broadcast_to(xs[:, :, None], nb.shape)], -1)
    w = np.concatenate([pm1(ref.unpack_bits(w_rel, c_in)), pm1(ref.unpack_bits(w_self, c_in))],
                       -1)
    y = e @ w.T
    bits = ref.predicate(y, lo, hi, neg).any(axis=2) ^ out_neg.astype(bool)
    np.testing.assert_array_equal(want, ref.pack_bits(bits))


def test_edge_preact0_matches_training_layer0() -> None:
    """The engine's first-layer pre-activations are the training library's per-node parts,
    bit for bit (the exactness contract), and the linear map on the edge features to rounding."""
    from bingnn.nn.edge_features import edge_features
    from bingnn.nn.edge_linear import linear_parts
    from bingnn.nn.knn import gather_neighbors

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 50, 3)).astype(np.float32)
    idx = rng.integers(0, 50, size=(2, 50, 7)).astype(np.int32)
    w = np.where(rng.random((64, 6)) < 0.5, 1.0, -1.0).astype(np.float32)
    s = rng.normal(size=6).astype(np.float32)
    t = rng.normal(size=6).astype(np.float32)
    xt, it = torch.from_numpy(x), torch.from_numpy(idx).long()
    for scale, shift in ((None, None), (s, t)):
        u, v = linear_parts(xt, torch.from_numpy(w), None if scale is None else
                            torch.from_numpy(scale), None if shift is None else
                            torch.from_numpy(shift))
        want = (gather_neighbors(u, it) + v.unsqueeze(2)).numpy()
        got = ref.edge_preact0(x, idx, w, scale, shift)
        np.testing.assert_array_equal(got, want)
        e = edge_features(xt, it, "sub")
        if scale is not None:
            e = e * torch.from_numpy(scale) + torch.from_numpy(shift)
        approx = torch.nn.functional.linear(e, torch.from_numpy(w)).numpy()
        np.testing.assert_allclose(got, approx, rtol=1e-5, atol=1e-5)
