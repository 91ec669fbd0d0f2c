"""k-NN by selection (native kernels, topk on integer keys) against the plain stable sort
(``knn_reference``), with the (distance, index) tie rule, and the fixed-order xyz distances."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bingnn.engine import reference as ref
from bingnn.nn import knn, knn_reference, pairwise_distance
from bingnn.nn.knn import select_smallest, xyz_sq_distance


def coarse(b: int, n: int, c: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    """A coarse grid: many equal distances and duplicate points."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy((rng.integers(-2, 3, size=(b, n, c)) * scale).astype(np.float32))


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 3), n=st.integers(1, 70), c=st.sampled_from([1, 2, 3, 5, 64, 70]),
       seed=st.integers(0, 10**6), scale=st.sampled_from([1e-3, 1.0, 1e3]),
       metric=st.sampled_from(["l2", "l1", "hamming"]))
def test_knn_equals_stable_sort_with_ties(b, n, c, seed, scale, metric) -> None:
    x = coarse(b, n, c, seed, scale)
    if metric == "hamming":
        x = torch.where(x >= 0, 1.0, -1.0)
    k = int(np.random.default_rng(seed).integers(1, n + 1))
    assert torch.equal(knn(x, k, metric), knn_reference(x, k, metric))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_topk_key_selection_equals_native_and_sort(dtype: torch.dtype) -> None:
    rng = np.random.default_rng(0)
    d = torch.from_numpy(rng.integers(0, 5, size=(6, 37)).astype(np.float32)).to(dtype)
    d[0, 3] = -0.0  # equal to +0.0
    d[1, :4] = -1.5  # negative values (relaxed Hamming can round below zero)
    want = torch.sort(d.float(), dim=-1, stable=True).indices[..., :9]
    assert torch.equal(select_smallest(d, 9), want)
    # The topk route, as on a GPU (the module, not the function bingnn.nn.knn).
    knn_mod = importlib.import_module("bingnn.nn.knn")
    native = knn_mod._native
    try:
        knn_mod._native = None
        assert torch.equal(select_smallest(d, 9), want)
    finally:
        knn_mod._native = native


def test_relaxed_hamming_on_tanh_features() -> None:
    x = torch.tanh(torch.randn(2, 30, 16, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(knn(x, 7, "hamming"), knn_reference(x, 7, "hamming"))


def test_k_equals_n_and_k_one() -> None:
    x = torch.randn(2, 13, 3)
    assert torch.equal(knn(x, 13).sort(-1).values, torch.arange(13).expand(2, 13, 13))
    assert torch.equal(knn(x, 1)[..., 0], torch.arange(13).expand(2, 13))


# ------------------------------------------------------------------ the xyz distance contract


def torch_fixed_order(x: torch.Tensor) -> torch.Tensor:
    """The contract written out with scalar loops of float32 operations."""
    x = x.numpy()
    b, n, _ = x.shape
    f = np.float32
    out = np.zeros((b, n, n), np.float32)
    for s in range(b):
        for i in range(n):
            for j in range(n):
                a, c = x[s, i], x[s, j]
                sqi = f(f(f(a[0] * a[0]) + f(a[1] * a[1])) + f(a[2] * a[2]))
                sqj = f(f(f(c[0] * c[0]) + f(c[1] * c[1])) + f(c[2] * c[2]))
                dot = f(f(f(a[0] * c[0]) + f(a[1] * c[1])) + f(a[2] * c[2]))
                out[s, i, j] = max(f(0.0), f(f(sqi + sqj) - f(f(2.0) * dot)))
    return torch.from_numpy(out)


@pytest.mark.parametrize("seed", range(4))
def test_xyz_distances_follow_the_fixed_order(seed: int) -> None:
    x = torch.randn(2, 9, 3, generator=torch.Generator().manual_seed(seed)) * 10 ** (seed - 2)
    want = torch_fixed_order(x)
    assert torch.equal(xyz_sq_distance(x), want)
    assert torch.equal(pairwise_distance(x, "l2"), want)
    np.testing.assert_array_equal(ref.xyz_sq_distances(x.numpy()), want.numpy())
