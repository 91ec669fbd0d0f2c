"""Native packed-bit kernels vs the training library (PyTorch), at every dispatch level: the
neighbour lists, dot products and edge features the engine computes are the ones training
computed. (The numpy-only kernel tests are in ``test_engine_kernels.py``.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_engine_kernels import pm1, random_conv, random_thresholds, ref_conv_minmax, ref_threshold

from bingnn.engine import kernels as K
from bingnn.nn import edge_features, knn

LEVELS = K.cpu_features()["levels"]


@pytest.fixture(params=LEVELS)
def level(request):
    with K.dispatch(request.param):
        yield request.param


def torch_knn(x_pm1: np.ndarray, k: int) -> np.ndarray:
    return knn(torch.from_numpy(x_pm1), k, "hamming").numpy()


def test_torch_tensor_is_refused_with_a_hint():
    with pytest.raises(TypeError, match=r"torch tensor.*numpy\(\)"):
        K.pack_signs(torch.ones(3))


def test_gemm_equals_torch_matmul(level):
    rng = np.random.default_rng(7)
    a, b = pm1(rng, 203, 130), pm1(rng, 67, 130)
    want = torch.matmul(torch.from_numpy(a), torch.from_numpy(b).T).round().int().numpy()
    for threads in (1, 2, None):
        got = K.binary_gemm(K.pack_signs(a), K.pack_signs(b), 130, num_threads=threads)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("c", [1, 3, 63, 64, 65, 127, 200])
def test_knn_matches_training_library(level, c):
    x = pm1(np.random.default_rng(200 + c), 2, 45, c)
    idx, _ = K.hamming_knn(K.pack_signs(x), 9, n_bits=c)
    np.testing.assert_array_equal(idx, torch_knn(x, 9))


def test_knn_heavy_ties_match_training_library(level):
    rng = np.random.default_rng(3)
    protos = pm1(rng, 4, 70)
    x = protos[rng.integers(0, 4, size=(3, 61))]  # 4 distinct points: ties everywhere
    for k in (1, 5, 17, 61):
        np.testing.assert_array_equal(K.hamming_knn(K.pack_signs(x), k)[0], torch_knn(x, k))


def test_knn_large_set_matches_training_library(level):
    x = pm1(np.random.default_rng(11), 3, 300, 128)
    for threads in (1, 2, 5):
        idx, _ = K.hamming_knn(K.pack_signs(x), 20, num_threads=threads)
        np.testing.assert_array_equal(idx, torch_knn(x, 20))


def test_conv_matches_training_edge_features(level):
    """y equals the training library's XOR edge features times the +-1 weights."""
    rng = np.random.default_rng(5)
    c_in, c_out, k = 70, 33, 8
    x = pm1(rng, 2, 40, c_in)
    xt = torch.from_numpy(x)
    idx = knn(xt, k, "hamming")
    w_full, w_rel, w_self = random_conv(rng, c_in, c_out)
    y = edge_features(xt, idx, op="xor") @ torch.from_numpy(w_full).T  # (B, N, k, C_out)
    ymax, ymin = K.xor_edge_conv_minmax(K.pack_signs(x), idx.numpy(), w_rel, w_self, c_in=c_in)
    np.testing.assert_array_equal(ymax, y.amax(dim=2).round().int().numpy())
    np.testing.assert_array_equal(ymin, y.amin(dim=2).round().int().numpy())


def test_fused_conv_graph_is_the_training_graph(level):
    rng = np.random.default_rng(9)
    c_in, c_out, n, k = 64, 70, 57, 20
    x = pm1(rng, 3, n, c_in)
    w_full, w_rel, w_self = random_conv(rng, c_in, c_out)
    t_hi, t_lo, negate = random_thresholds(rng, c_out, c_in)
    out, idx = K.xor_edge_conv_knn(
        K.pack_signs(x), k, w_rel, w_self, t_hi, t_lo, negate, c_in=c_in, return_idx=True
    )
    np.testing.assert_array_equal(idx, torch_knn(x, k))
    ref_max, ref_min = ref_conv_minmax(x, idx, w_full)
    np.testing.assert_array_equal(out, ref_threshold(ref_max, ref_min, t_hi, t_lo, negate))
