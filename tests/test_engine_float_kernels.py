"""Native real-valued engine kernels (3-D L2 k-NN, row selection, first-layer edge max/min,
embedding pooling) against the numpy reference and PyTorch, at every dispatch level."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bingnn import _native
from bingnn.engine import _ops, kernels
from bingnn.engine import reference as ref
from bingnn.nn.knn import knn as torch_knn
from bingnn.nn.knn import knn_reference, select_smallest, xyz_sq_distance

LEVELS = kernels.cpu_features()["levels"]


@pytest.fixture(params=LEVELS)
def level(request):
    with kernels.dispatch(request.param):
        yield request.param


def test_kernels_are_built() -> None:
    for name in ("l2_knn3", "select_k_rows", "edge_conv0_minmax", "rf_edge_minmax",
                 "embed_pool"):
        assert _ops.has(name), name


@pytest.mark.parametrize("b,n,k", [(1, 1, 1), (2, 5, 5), (3, 40, 7), (2, 300, 20), (1, 1024, 20)])
def test_l2_knn3_matches_torch(level: str, b: int, n: int, k: int) -> None:
    rng = np.random.default_rng(n + k)
    x = rng.standard_normal((b, n, 3), dtype=np.float32)
    want = torch_knn(torch.from_numpy(x), k, "l2").numpy()
    np.testing.assert_array_equal(_ops.l2_knn(x, k, True, 1), want)
    np.testing.assert_array_equal(_ops.l2_knn(x, k, True, None), want)


def check_l2_knn3_tie_case(b: int, n: int, seed: int, scale: float) -> None:
    """The engine's 3-D k-NN, the training library's (native and PyTorch routes) and the plain
    stable sort of the contract's distances agree exactly."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, n + 1))
    # Coarse grid: many equal distances and duplicate points; ties go to the smaller index.
    x = (rng.integers(-2, 3, size=(b, n, 3)) * scale).astype(np.float32)
    want = np.argsort(ref.xyz_sq_distances(x), axis=-1, kind="stable")[..., :k]
    xt = torch.from_numpy(x)
    np.testing.assert_array_equal(torch_knn(xt, k, "l2").numpy(), want)
    np.testing.assert_array_equal(knn_reference(xt, k, "l2").numpy(), want)
    np.testing.assert_array_equal(select_smallest(xyz_sq_distance(xt), k).numpy(), want)
    np.testing.assert_array_equal(ref.l2_knn(x, k), want)
    for lvl in LEVELS:
        with kernels.dispatch(lvl):
            np.testing.assert_array_equal(_ops.l2_knn(x, k, True, 1), want, err_msg=lvl)


@pytest.mark.parametrize("b,n,seed,scale", [
    (1, 8, 0, 1e-3),  # the counterexample of the BLAS-ordered dot product (issue 11)
    (1, 8, 0, 1.0),
    (3, 70, 1, 1e3),
    (2, 33, 12345, 1e-3),
    (1, 1, 0, 1.0),
])
def test_l2_knn3_ties_and_duplicates_examples(b: int, n: int, seed: int, scale: float) -> None:
    check_l2_knn3_tie_case(b, n, seed, scale)


def test_l2_knn3_counterexample_order() -> None:
    """b=1, n=8, seed=0, scale=1e-3: with the dot product summed by a BLAS kernel, PyTorch once
    ordered the last neighbours [7, 0, 1, 5] against the engine's [7, 0, 5, 1]; both sides now
    compute the contract's elementwise order, so they agree by construction."""
    rng = np.random.default_rng(0)
    k = int(rng.integers(1, 9))
    x = (rng.integers(-2, 3, size=(1, 8, 3)) * 1e-3).astype(np.float32)
    got = _ops.l2_knn(x, k, True, 1)
    np.testing.assert_array_equal(torch_knn(torch.from_numpy(x), k, "l2").numpy(), got)
    d = ref.xyz_sq_distances(x)
    for i in range(8):  # (distance, index) order, checked pair by pair
        keys = [(float(d[0, i, j]), int(j)) for j in got[0, i]]
        assert keys == sorted(keys)


@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 3), n=st.integers(1, 70), seed=st.integers(0, 10**6),
       scale=st.sampled_from([1e-3, 1.0, 1e3]))
def test_l2_knn3_ties_and_duplicates(b: int, n: int, seed: int, scale: float) -> None:
    check_l2_knn3_tie_case(b, n, seed, scale)


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("bn", [False, True])
def test_edge_conv0_minmax_equals_training_layer0(level: str, binary: bool, bn: bool) -> None:
    """The engine's first layer computes the training library's pre-activations bit for bit
    (``bingnn.nn.edge_linear.linear_parts``), real weights and BatchNorm folding included."""
    from bingnn.nn.edge_linear import linear_parts
    from bingnn.nn.knn import gather_neighbors

    rng = np.random.default_rng(int(binary) + 2 * int(bn))
    b, n, k, c = 2, 41, 7, 37
    x = (rng.standard_normal((b, n, 3)) * 3).astype(np.float32)
    idx = rng.integers(0, n, size=(b, n, k)).astype(np.int32)
    w = rng.standard_normal((c, 6)).astype(np.float32)
    if binary:
        w = np.where(w >= 0, 1.0, -1.0).astype(np.float32)
    s = rng.standard_normal(6).astype(np.float32) if bn else None
    t = rng.standard_normal(6).astype(np.float32) if bn else None
    u, v = linear_parts(torch.from_numpy(x), torch.from_numpy(w),
                        None if s is None else torch.from_numpy(s),
                        None if t is None else torch.from_numpy(t))
    y = (gather_neighbors(u, torch.from_numpy(idx).long()) + v.unsqueeze(2)).numpy()
    ymax, ymin = _ops.edge0_minmax(x, idx, w, s, t, True, 1)
    np.testing.assert_array_equal(ymax, y.max(axis=2))
    np.testing.assert_array_equal(ymin, y.min(axis=2))


@pytest.mark.parametrize("c", [1, 16, 64, 70])
@pytest.mark.parametrize("bn", [False, True])
def test_edge_conv0_minmax_matches_reference(level: str, c: int, bn: bool) -> None:
    rng = np.random.default_rng(c)
    b, n, k = 2, 50, 9
    x = rng.standard_normal((b, n, 3), dtype=np.float32)
    idx = rng.integers(0, n, size=(b, n, k)).astype(np.int32)
    w = np.where(rng.random((c, 6)) < 0.5, 1.0, -1.0).astype(np.float32)
    s = rng.standard_normal(6).astype(np.float32) if bn else None
    t = rng.standard_normal(6).astype(np.float32) if bn else None
    y = ref.edge_preact0(x, idx, w, s, t)
    ymax, ymin = _ops.edge0_minmax(x, idx, w, s, t, True, 1)
    np.testing.assert_array_equal(ymax, y.max(axis=2))
    np.testing.assert_array_equal(ymin, y.min(axis=2))


@pytest.mark.parametrize("b,n,c", [(2, 24, 32), (1, 1024, 1024), (3, 100, 64), (1, 17, 96)])
@pytest.mark.parametrize("bn", [False, True])
def test_embed_pool_matches_torch_bits(level: str, b: int, n: int, c: int, bn: bool) -> None:
    """Max and mean pooling equal PyTorch's bit for bit (mean summed in its cascade order)."""
    from bingnn.export.fold import _bn_affine
    from bingnn.nn.activations import ChannelPReLU
    from bingnn.nn.centering import ChannelBatchNorm

    rng = np.random.default_rng(n + c)
    y = rng.integers(-60, 61, size=(b, n, c)).astype(np.int32)
    alpha = rng.standard_normal(c).astype(np.float32)
    slope = (rng.standard_normal(c) * 0.3).astype(np.float32)
    norm = ChannelBatchNorm(c).eval()
    act = ChannelPReLU(c)
    with torch.no_grad():
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2)
        norm.weight.normal_()
        norm.bias.normal_()
        act.weight.copy_(torch.from_numpy(slope))
        h = act(torch.from_numpy(y).float() * torch.from_numpy(alpha))
        if bn:
            h = norm(h)
        want = torch.cat([h.max(dim=1).values, h.mean(dim=1)], dim=-1).numpy()
    s, t = _bn_affine(norm, "bn") if bn else (None, None)
    np.testing.assert_array_equal(_ops.embed_pool(y, alpha, slope, s, t, True, 1), want)
    np.testing.assert_array_equal(ref.embed_pool(y, alpha, slope, s, t), want)


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 3), n=st.integers(1, 80), c=st.integers(1, 40), seed=st.integers(0, 999))
def test_embed_pool_native_equals_reference(b: int, n: int, c: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(-30, 31, size=(b, n, c)).astype(np.int32)
    alpha = rng.standard_normal(c).astype(np.float32)
    slope = rng.standard_normal(c).astype(np.float32)
    s, t = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    for lvl in LEVELS:
        with kernels.dispatch(lvl):
            for bn in (False, True):
                got = _ops.embed_pool(y, alpha, slope, s if bn else None, t if bn else None,
                                      True, 1)
                want = ref.embed_pool(y, alpha, slope, s if bn else None, t if bn else None)
                np.testing.assert_array_equal(got, want, err_msg=lvl)


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 20), m=st.integers(1, 90), seed=st.integers(0, 999))
def test_select_k_rows_stable(rows: int, m: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, m + 1))
    d = rng.integers(0, 4, size=(rows, m)).astype(np.float32)  # many ties
    want = np.argsort(d, axis=1, kind="stable")[:, :k]
    for lvl in LEVELS:
        with kernels.dispatch(lvl):
            np.testing.assert_array_equal(_native.select_k_rows(d, k, 1), want, err_msg=lvl)


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 2), n=st.integers(1, 30), c=st.integers(1, 140), c_out=st.integers(1, 20),
       seed=st.integers(0, 999))
def test_rf_edge_minmax_matches_brute_force(b: int, n: int, c: int, c_out: int,
                                            seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, n + 1))
    h = rng.standard_normal((b, n, c), dtype=np.float32)
    idx = rng.integers(0, n, size=(b, n, k)).astype(np.int32)
    lo = rng.standard_normal(c).astype(np.float32) - 0.5
    hi = rng.standard_normal(c).astype(np.float32) + 0.5
    neg = (rng.random(c) < 0.3).astype(np.uint8)
    s_lo, s_hi = lo[::-1].copy(), hi[::-1].copy()
    s_neg = neg[::-1].copy()
    w_rel, w_self = rng.random((c_out, c)) < 0.5, rng.random((c_out, c)) < 0.5
    # Brute force on +-1 values.
    pm = lambda bits: np.where(bits, 1, -1)  # noqa: E731
    rel = ref.predicate(ref.gather(h, idx) - h[:, :, None, :], lo, hi, neg)
    slf = ref.predicate(h, s_lo, s_hi, s_neg)
    y = pm(rel) @ pm(w_rel).T + (pm(slf) @ pm(w_self).T)[:, :, None, :]
    for lvl in LEVELS:
        with kernels.dispatch(lvl):
            ymax, ymin = _ops.rf_edge_minmax(h, idx, lo, hi, neg, s_lo, s_hi, s_neg,
                                             ref.pack_bits(w_rel), ref.pack_bits(w_self),
                                             True, 1)
            np.testing.assert_array_equal(ymax, y.max(axis=2), err_msg=lvl)
            np.testing.assert_array_equal(ymin, y.min(axis=2), err_msg=lvl)


def test_bindings_reject_bad_arguments() -> None:
    x = np.zeros((1, 5, 3), np.float32)
    with pytest.raises(ValueError, match="k <= N"):
        _native.l2_knn3(x, 6, 1)
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        _native.l2_knn3(np.zeros((1, 5, 2), np.float32), 1, 1)
    idx = np.full((1, 5, 2), 5, np.int32)
    with pytest.raises(ValueError, match="outside"):
        _native.edge_conv0_minmax(x, idx, np.ones((4, 6), np.float32), None, None, 1)
    with pytest.raises(ValueError, match=r"\(C, 6\)"):
        _native.edge_conv0_minmax(x, idx * 0, np.ones((4, 5), np.float32), None, None, 1)
