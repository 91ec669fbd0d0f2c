"""Native packed-bit kernels vs plain numpy references, at every dispatch level.

This module needs numpy, pytest and hypothesis only (no PyTorch), so ``scripts/test_arm64.sh``
runs it on the ARM64 build under qemu too; the comparisons with the training library live in
``test_engine_kernels_torch.py``.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bingnn.engine import kernels as K

LEVELS = K.cpu_features()["levels"]
ODD_SIZES = [1, 2, 63, 64, 65, 127, 128, 129, 200]
FAST = settings(max_examples=25, deadline=None)


@pytest.fixture(params=LEVELS)
def level(request):
    with K.dispatch(request.param):
        yield request.param


# ----------------------------------------------------------------------------- references


def ref_pack(x: np.ndarray) -> np.ndarray:
    """Independent packing: numpy packbits (little bit order) over 64-bit-padded rows."""
    c = x.shape[-1]
    w = (c + 63) // 64
    bits = np.zeros((*x.shape[:-1], w * 64), dtype=np.uint8)
    bits[..., :c] = x >= 0
    packed = np.packbits(bits, axis=-1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8").reshape(*x.shape[:-1], w)


def pm1(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


def ref_knn(x_pm1: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: Hamming = (C - <x, y>) / 2, order by (distance, index)."""
    c = x_pm1.shape[-1]
    xi = x_pm1.astype(np.int64)
    d = (c - xi @ xi.transpose(0, 2, 1)) // 2
    n = d.shape[-1]
    order = np.argsort(d * n + np.arange(n), axis=-1, kind="stable")[..., :k]
    return order, np.take_along_axis(d, order, axis=-1)


def ref_conv_minmax(x_pm1, idx, w_full):
    """+-1 edge features [-x_j x_i, x_i] times the +-1 weight rows, max/min over neighbours."""
    b = np.arange(x_pm1.shape[0])[:, None, None]
    xj = x_pm1[b, idx].astype(np.int64)  # (B, N, k, C)
    xi = np.broadcast_to(x_pm1[:, :, None, :], xj.shape).astype(np.int64)
    e = np.concatenate([-xj * xi, xi], axis=-1)
    y = e @ w_full.astype(np.int64).T  # (B, N, k, C_out)
    return y.max(axis=2), y.min(axis=2)


def ref_threshold(ymax, ymin, t_hi, t_lo, negate):
    fire = (ymax >= t_hi) | (ymin <= t_lo)
    return ref_pack(np.where(fire ^ negate.astype(bool), 1.0, -1.0))


def random_conv(rng, c_in, c_out):
    w_full = pm1(rng, c_out, 2 * c_in)
    w_rel = K.pack_signs(w_full[:, :c_in])
    w_self = K.pack_signs(w_full[:, c_in:])
    return w_full, w_rel, w_self


# ----------------------------------------------------------------------------- dispatch


def test_cpu_features_and_dispatch():
    f = K.cpu_features()
    assert f["levels"][0] == "scalar"
    assert f["best"] in f["levels"]
    assert f["hardware_threads"] >= 1
    before = K.get_dispatch()
    with K.dispatch("scalar"):
        assert K.get_dispatch() == "scalar"
        assert K.cpu_features()["dispatch"] == "scalar"
    assert K.get_dispatch() == before
    with pytest.raises(ValueError, match="unknown dispatch level"):
        K.set_dispatch("sse9")
    for name in ("avx2", "avx512"):
        if name not in f["levels"]:
            with pytest.raises(ValueError, match="not supported"):
                K.set_dispatch(name)


# ----------------------------------------------------------------------------- packing


@pytest.mark.parametrize("c", ODD_SIZES + [0])
def test_pack_matches_reference(level, c):
    rng = np.random.default_rng(c)
    x = rng.standard_normal((3, 4, c)).astype(np.float32)
    x[..., ::7] = 0.0  # sign(0) = +1
    if c > 2:
        x[0, 0, 1] = -0.0  # -0.0 >= 0 too
    packed = K.pack_signs(x)
    assert packed.dtype == np.uint64 and packed.shape == (3, 4, (c + 63) // 64)
    np.testing.assert_array_equal(packed, ref_pack(x))
    back = K.unpack_signs(packed, c)
    assert back.dtype == np.int8
    np.testing.assert_array_equal(back, np.where(x >= 0, 1, -1))


@FAST
@given(
    c=st.integers(0, 300),
    rows=st.integers(0, 9),
    seed=st.integers(0, 2**32 - 1),
)
def test_pack_roundtrip_property(c, rows, seed):
    x = np.random.default_rng(seed).standard_normal((rows, c)).astype(np.float32)
    for lvl in LEVELS:
        with K.dispatch(lvl):
            packed = K.pack_signs(x)
            np.testing.assert_array_equal(packed, ref_pack(x))
            np.testing.assert_array_equal(K.unpack_signs(packed, c), np.where(x >= 0, 1, -1))


def test_pack_other_dtypes_keep_the_sign():
    x = np.array([[-1e-300, 0.0, 1e-300, -3.0]])  # float64 values that would flush in float32
    np.testing.assert_array_equal(K.unpack_signs(K.pack_signs(x), 4), [[-1, 1, 1, -1]])
    xi = np.array([[-2, 0, 5]], dtype=np.int64)
    np.testing.assert_array_equal(K.unpack_signs(K.pack_signs(xi), 3), [[-1, 1, 1]])
    # Non-contiguous input is accepted.
    xt = np.random.default_rng(0).standard_normal((70, 5)).astype(np.float32).T
    np.testing.assert_array_equal(K.pack_signs(xt), ref_pack(xt))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("pos", [0, 17, 64, 69])
def test_pack_rejects_non_finite_at_every_level(level, bad, pos):
    x = np.ones((3, 70), np.float32)
    x[1, pos] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        K.pack_signs(x)


def test_pack_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        K.pack_signs(np.array([1.0, np.nan], dtype=np.float32))
    with pytest.raises(ValueError, match="NaN or infinite"):
        K.pack_signs(np.array([np.inf]))
    with pytest.raises(TypeError, match="real"):
        K.pack_signs(np.array([True, False]))
    with pytest.raises(ValueError, match="at least one dimension"):
        K.pack_signs(np.float32(1.0))
    with pytest.raises(ValueError, match="padding bits"):
        K.unpack_signs(np.array([[1 << 5]], dtype=np.uint64), 5)
    with pytest.raises(ValueError, match="words"):
        K.unpack_signs(np.zeros((2, 2), np.uint64), 64)
    with pytest.raises(TypeError, match="uint64"):
        K.unpack_signs(np.zeros((2, 1), np.int64), 64)


# ----------------------------------------------------------------------------- binary GEMM


@pytest.mark.parametrize("c", ODD_SIZES)
def test_gemm_matches_pm1_matmul(level, c):
    rng = np.random.default_rng(100 + c)
    a, b = pm1(rng, 37, c), pm1(rng, 21, c)
    out = K.binary_gemm(K.pack_signs(a), K.pack_signs(b), c)
    assert out.dtype == np.int32 and out.shape == (37, 21)
    np.testing.assert_array_equal(out, (a @ b.T).astype(np.int32))


@FAST
@given(
    m=st.integers(0, 13),
    n=st.integers(0, 19),
    c=st.sampled_from([0, *ODD_SIZES, 300, 511, 2100]),
    seed=st.integers(0, 2**32 - 1),
)
def test_gemm_property_all_levels(m, n, c, seed):
    rng = np.random.default_rng(seed)
    a, b = pm1(rng, m, c), pm1(rng, n, c)
    ref = (a.astype(np.int64) @ b.astype(np.int64).T).astype(np.int32)
    pa, pb = K.pack_signs(a), K.pack_signs(b)
    for lvl in LEVELS:
        with K.dispatch(lvl):
            np.testing.assert_array_equal(K.binary_gemm(pa, pb, c), ref)


def test_gemm_threads():
    rng = np.random.default_rng(7)
    a, b = pm1(rng, 203, 130), pm1(rng, 67, 130)
    pa, pb = K.pack_signs(a), K.pack_signs(b)
    ref = (a.astype(np.int64) @ b.astype(np.int64).T).astype(np.int32)
    for threads in (1, 2, 3, None):
        np.testing.assert_array_equal(K.binary_gemm(pa, pb, 130, num_threads=threads), ref)


def test_gemm_into_out_buffer():
    rng = np.random.default_rng(4)
    a, b = pm1(rng, 9, 100), pm1(rng, 5, 100)
    pa, pb = K.pack_signs(a), K.pack_signs(b)
    buf = np.full((9, 5), 12345, np.int32)
    res = K.binary_gemm(pa, pb, 100, out=buf)
    assert res is buf
    np.testing.assert_array_equal(buf, (a @ b.T).astype(np.int32))
    with pytest.raises(TypeError, match="shape"):
        K.binary_gemm(pa, pb, 100, out=np.zeros((5, 9), np.int32))
    with pytest.raises(TypeError, match="int32"):
        K.binary_gemm(pa, pb, 100, out=np.zeros((9, 5), np.int64))
    with pytest.raises(ValueError, match="C-contiguous"):
        K.binary_gemm(pa, pb, 100, out=np.zeros((5, 9), np.int32).T)


def test_gemm_scalar_vs_simd_large():
    rng = np.random.default_rng(8)
    pa = K.pack_signs(rng.standard_normal((301, 517)).astype(np.float32))
    pb = K.pack_signs(rng.standard_normal((77, 517)).astype(np.float32))
    with K.dispatch("scalar"):
        ref = K.binary_gemm(pa, pb, 517)
    for lvl in LEVELS:
        with K.dispatch(lvl):
            np.testing.assert_array_equal(K.binary_gemm(pa, pb, 517), ref)


def test_gemm_very_wide_rows_all_levels():
    """Rows of 4100 words: past every accumulator's folding interval (AVX2 folds byte counts
    every 31 words, NEON its 16-bit lanes every 4095 words)."""
    rng = np.random.default_rng(10)
    c = 64 * 4100 + 5
    a, b = pm1(rng, 3, c), pm1(rng, 9, c)
    b[0] = a[0]  # the extreme counts too: all equal (+c) and all different (-c)
    b[1] = -a[1]
    want = (a.astype(np.int64) @ b.astype(np.int64).T).astype(np.int32)
    pa, pb = K.pack_signs(a), K.pack_signs(b)
    for lvl in LEVELS:
        with K.dispatch(lvl):
            got = K.binary_gemm(pa, pb, c)
            np.testing.assert_array_equal(got, want, err_msg=lvl)
    assert got[0, 0] == c and got[1, 1] == -c


def test_gemm_bad_input():
    a = np.zeros((3, 2), np.uint64)
    with pytest.raises(ValueError, match="words"):
        K.binary_gemm(a, a, 64)
    with pytest.raises(ValueError, match="2 dimensions"):
        K.binary_gemm(a[0], a, 100)
    with pytest.raises(ValueError, match="padding"):
        K.binary_gemm(np.full((1, 2), 2**63, np.uint64), a, 100)
    with pytest.raises(TypeError, match="uint64"):
        K.binary_gemm(a.astype(np.float32), a, 100)
    with pytest.raises(ValueError, match="num_threads"):
        K.binary_gemm(a, a, 100, num_threads=0)


# ----------------------------------------------------------------------------- Hamming k-NN


@pytest.mark.parametrize("c", [1, 3, 63, 64, 65, 127, 200])
def test_knn_matches_reference(level, c):
    rng = np.random.default_rng(200 + c)
    x = pm1(rng, 2, 45, c)
    k = min(9, 45)
    idx, dist = K.hamming_knn(K.pack_signs(x), k, n_bits=c)
    assert idx.dtype == np.int32 and dist.dtype == np.int32 and idx.shape == (2, 45, k)
    ref_idx, ref_dist = ref_knn(x, k)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(dist, ref_dist)


def test_knn_heavy_ties_and_duplicates(level):
    rng = np.random.default_rng(3)
    # Only 4 distinct points, repeated: every distance is tied many times.
    protos = pm1(rng, 4, 70)
    x = protos[rng.integers(0, 4, size=(3, 61))]
    for k in (1, 5, 17, 61):
        idx, dist = K.hamming_knn(K.pack_signs(x), k)
        ref_idx, ref_dist = ref_knn(x, k)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(dist, ref_dist)


@FAST
@given(
    b=st.integers(1, 3),
    n=st.integers(1, 70),
    c=st.sampled_from([1, 2, 5, 63, 64, 65, 127, 200]),
    k_frac=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_knn_property_all_levels(b, n, c, k_frac, seed):
    rng = np.random.default_rng(seed)
    x = pm1(rng, b, n, c)
    k = max(1, round(k_frac * n))  # includes k = N
    ref_idx, ref_dist = ref_knn(x, k)
    packed = K.pack_signs(x)
    for lvl in LEVELS:
        with K.dispatch(lvl):
            idx, dist = K.hamming_knn(packed, k)
            np.testing.assert_array_equal(idx, ref_idx)
            np.testing.assert_array_equal(dist, ref_dist)


@FAST
@given(n=st.integers(1, 40), extra=st.integers(1, 5), w=st.integers(1, 4))
def test_knn_k_above_n_is_rejected(n, extra, w):
    x = np.zeros((1, n, w), np.uint64)
    with pytest.raises(ValueError, match=f"only {n} points"):
        K.hamming_knn(x, n + extra)
    assert K.hamming_knn(x, n)[0].shape == (1, n, n)  # k = N is fine


def test_knn_large_set_threads_and_levels():
    rng = np.random.default_rng(11)
    x = pm1(rng, 3, 300, 128)
    packed = K.pack_signs(x)
    with K.dispatch("scalar"):
        ref = K.hamming_knn(packed, 20, num_threads=1)
    np.testing.assert_array_equal(ref[0], ref_knn(x, 20)[0])
    for lvl in LEVELS:
        with K.dispatch(lvl):
            for threads in (1, 2, 5):
                idx, dist = K.hamming_knn(packed, 20, num_threads=threads)
                np.testing.assert_array_equal(idx, ref[0])
                np.testing.assert_array_equal(dist, ref[1])


def test_knn_wide_points_all_levels():
    """Many words per point (W = 16 and 33) and a set size not a multiple of 32."""
    rng = np.random.default_rng(12)
    for c in (1000, 2100):
        x = pm1(rng, 2, 77, c)
        x[:, 40] = x[:, 3]  # exact duplicates: distance-0 ties beside self
        ref_idx, ref_dist = ref_knn(x, 10)
        for lvl in LEVELS:
            with K.dispatch(lvl):
                idx, dist = K.hamming_knn(K.pack_signs(x), 10, n_bits=c)
                np.testing.assert_array_equal(idx, ref_idx)
                np.testing.assert_array_equal(dist, ref_dist)


def test_knn_bad_input():
    x = np.zeros((2, 5, 1), np.uint64)
    with pytest.raises(ValueError, match="k must be >= 1"):
        K.hamming_knn(x, 0)
    with pytest.raises(ValueError, match="only 5 points"):
        K.hamming_knn(x, 6)
    with pytest.raises(ValueError, match="empty"):
        K.hamming_knn(np.zeros((2, 0, 1), np.uint64), 1)
    with pytest.raises(ValueError, match="empty"):
        K.hamming_knn(np.zeros((0, 4, 1), np.uint64), 1)
    with pytest.raises(ValueError, match="no channels"):
        K.hamming_knn(np.zeros((1, 4, 0), np.uint64), 1)
    with pytest.raises(ValueError, match="3 dimensions"):
        K.hamming_knn(x[0], 1)
    with pytest.raises(ValueError, match="padding"):
        K.hamming_knn(np.ones((1, 3, 1), np.uint64) << np.uint64(40), 2, n_bits=20)
    with pytest.raises(TypeError, match="k must be an int"):
        K.hamming_knn(x, 2.0)
    with pytest.raises(ValueError, match="at most"):
        K.hamming_knn(np.zeros((1, 2, 1024), np.uint64), 1)


# ----------------------------------------------------------------------------- XorEdgeConv


@pytest.mark.parametrize("c_in,c_out", [(1, 1), (3, 9), (64, 64), (65, 70), (128, 130)])
def test_conv_minmax_matches_reference(level, c_in, c_out):
    rng = np.random.default_rng(c_in * 1000 + c_out)
    b, n, k = 2, 23, 6
    x = pm1(rng, b, n, c_in)
    idx = rng.integers(0, n, size=(b, n, k)).astype(np.int32)
    w_full, w_rel, w_self = random_conv(rng, c_in, c_out)
    ymax, ymin = K.xor_edge_conv_minmax(K.pack_signs(x), idx, w_rel, w_self, c_in=c_in)
    assert ymax.dtype == np.int32 and ymax.shape == (b, n, c_out)
    ref_max, ref_min = ref_conv_minmax(x, idx, w_full)
    np.testing.assert_array_equal(ymax, ref_max)
    np.testing.assert_array_equal(ymin, ref_min)


def random_thresholds(rng, c_out, c_in):
    t_hi = rng.integers(-2 * c_in, 2 * c_in + 1, size=c_out).astype(np.int32)
    t_lo = rng.integers(-2 * c_in, 2 * c_in + 1, size=c_out).astype(np.int32)
    t_hi[::3] = K.T_HI_OFF  # one side disabled
    t_lo[1::3] = K.T_LO_OFF
    negate = rng.integers(0, 2, size=c_out).astype(np.uint8)
    return t_hi, t_lo, negate


@FAST
@given(
    c_in=st.sampled_from([1, 7, 63, 64, 65, 128, 200]),
    c_out=st.sampled_from([1, 8, 63, 64, 65, 130]),
    n=st.integers(1, 20),
    k=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
)
def test_conv_thresholds_property_all_levels(c_in, c_out, n, k, seed):
    rng = np.random.default_rng(seed)
    x = pm1(rng, 2, n, c_in)
    idx = rng.integers(0, n, size=(2, n, k)).astype(np.int32)
    w_full, w_rel, w_self = random_conv(rng, c_in, c_out)
    t_hi, t_lo, negate = random_thresholds(rng, c_out, c_in)
    ref_max, ref_min = ref_conv_minmax(x, idx, w_full)
    ref_bits = ref_threshold(ref_max, ref_min, t_hi, t_lo, negate)
    packed = K.pack_signs(x)
    for lvl in LEVELS:
        with K.dispatch(lvl):
            out = K.xor_edge_conv(packed, idx, w_rel, w_self, t_hi, t_lo, negate, c_in=c_in)
            assert out.shape == (2, n, (c_out + 63) // 64)
            np.testing.assert_array_equal(out, ref_bits)
            ymax, ymin = K.xor_edge_conv_minmax(packed, idx, w_rel, w_self, c_in=c_in)
            np.testing.assert_array_equal(ymax, ref_max)
            np.testing.assert_array_equal(ymin, ref_min)


def test_conv_knn_fused_equals_two_steps(level):
    rng = np.random.default_rng(9)
    c_in, c_out, n, k = 64, 70, 57, 20
    x = pm1(rng, 3, n, c_in)
    packed = K.pack_signs(x)
    w_full, w_rel, w_self = random_conv(rng, c_in, c_out)
    t_hi, t_lo, negate = random_thresholds(rng, c_out, c_in)
    out, idx = K.xor_edge_conv_knn(
        packed, k, w_rel, w_self, t_hi, t_lo, negate, c_in=c_in, return_idx=True
    )
    np.testing.assert_array_equal(idx, ref_knn(x, k)[0])
    ref_max, ref_min = ref_conv_minmax(x, idx, w_full)
    np.testing.assert_array_equal(out, ref_threshold(ref_max, ref_min, t_hi, t_lo, negate))
    for threads in (1, 3):
        alone = K.xor_edge_conv_knn(
            packed, k, w_rel, w_self, t_hi, t_lo, negate, c_in=c_in, num_threads=threads
        )
        np.testing.assert_array_equal(alone, out)


def test_conv_empty_sets_and_channels():
    rng = np.random.default_rng(1)
    _, w_rel, w_self = random_conv(rng, 10, 3)
    t, neg = np.zeros(3, np.int32), np.zeros(3, np.uint8)
    for b, n in ((0, 4), (2, 0)):
        x = np.zeros((b, n, 1), np.uint64)
        idx = np.zeros((b, n, 2), np.int32)
        out = K.xor_edge_conv(x, idx, w_rel, w_self, t, t, neg, c_in=10)
        assert out.shape == (b, n, 1)
        ymax, ymin = K.xor_edge_conv_minmax(x, idx, w_rel, w_self, c_in=10)
        assert ymax.shape == ymin.shape == (b, n, 3)
    # No output channels: an empty bit vector per point.
    x = K.pack_signs(pm1(rng, 1, 4, 10))
    idx = np.zeros((1, 4, 2), np.int32)
    none = np.zeros((0, 1), np.uint64)
    empty_t = np.zeros(0, np.int32)
    out = K.xor_edge_conv(x, idx, none, none, empty_t, empty_t, empty_t.astype(np.uint8), c_in=10)
    assert out.shape == (1, 4, 0)


def test_conv_bad_input():
    rng = np.random.default_rng(0)
    x = K.pack_signs(pm1(rng, 1, 4, 10))
    _, w_rel, w_self = random_conv(rng, 10, 3)
    idx = np.zeros((1, 4, 2), np.int32)
    t = np.zeros(3, np.int32)
    neg = np.zeros(3, np.uint8)
    with pytest.raises(ValueError, match="outside"):
        K.xor_edge_conv(x, idx + 4, w_rel, w_self, t, t, neg, c_in=10)
    with pytest.raises(ValueError, match="k = 0"):
        K.xor_edge_conv(x, idx[..., :0], w_rel, w_self, t, t, neg, c_in=10)
    with pytest.raises(ValueError, match="shape"):
        K.xor_edge_conv(x, idx[:, :3], w_rel, w_self, t, t, neg, c_in=10)
    with pytest.raises(ValueError, match=r"t_hi must have shape \(3,\)"):
        K.xor_edge_conv(x, idx, w_rel, w_self, t[:2], t, neg, c_in=10)
    with pytest.raises(ValueError, match="0/1"):
        K.xor_edge_conv(x, idx, w_rel, w_self, t, t, neg + 2, c_in=10)
    with pytest.raises(ValueError, match="output channels"):
        K.xor_edge_conv_minmax(x, idx, w_rel, w_self[:2], c_in=10)
    with pytest.raises(ValueError, match="words"):
        K.xor_edge_conv_minmax(x, idx, w_rel, w_self, c_in=100)
    with pytest.raises(ValueError, match="only 4 points"):
        K.xor_edge_conv_knn(x, 5, w_rel, w_self, t, t, neg, c_in=10)
    with pytest.raises(TypeError, match="integer"):
        K.xor_edge_conv(x, idx.astype(np.float32), w_rel, w_self, t, t, neg, c_in=10)


# ----------------------------------------------------------------------------- torch-free


@pytest.mark.spawns
def test_engine_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "import bingnn.engine, bingnn.engine.kernels as K\n"
        "p = K.pack_signs(np.ones((2, 3, 70), np.float32))\n"
        "assert K.hamming_knn(p, 2)[0].shape == (2, 3, 2)\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_reference_popcount_without_numpy2(monkeypatch):
    """The numpy reference counts bits with a byte table where numpy < 2 has no bitwise_count
    (the package supports numpy >= 1.24; Debian 12 ships 1.24)."""
    from bingnn.engine import reference as ref

    x = np.random.default_rng(6).integers(0, 2**64 - 1, size=(3, 5, 4), dtype=np.uint64,
                                          endpoint=True)
    x[0, 0] = [0, 2**64 - 1, 1, 2**63]
    want = np.array([[bin(int(v)).count("1") for v in row] for row in x.reshape(-1, 4)])
    if hasattr(np, "bitwise_count"):
        monkeypatch.delattr(np, "bitwise_count")
    np.testing.assert_array_equal(ref.popcount_words(x).reshape(-1, 4), want)
