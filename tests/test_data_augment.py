"""Augmentations: shapes, ranges, permutations, determinism (hypothesis properties)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bingnn.data.augment import (
    SCALE_RANGE,
    SHIFT_RANGE,
    augment_point_cloud,
    first_points,
    random_scale,
    random_shift,
    scale_and_shift,
    shuffle_points,
)

shapes = st.one_of(
    st.tuples(st.integers(1, 70)),  # one cloud, N not a multiple of 64 included
    st.tuples(st.integers(1, 5), st.integers(1, 70)),  # a batch
)
seeds = st.integers(0, 2**32 - 1)


def make(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).uniform(-1, 1, size=(*shape, 3)).astype(dtype)


def ratios_and_offsets(x, y):
    """Per cloud, recover s and t of y = x * s + t by least squares on each axis."""
    xs, ys = x.reshape(-1, x.shape[-2], 3), y.reshape(-1, y.shape[-2], 3)
    out_s, out_t = [], []
    for a, b in zip(xs, ys, strict=True):
        s, t = [], []
        for d in range(3):
            A = np.stack([a[:, d], np.ones(len(a))], 1).astype(np.float64)
            sol = np.linalg.lstsq(A, b[:, d].astype(np.float64), rcond=None)[0]
            s.append(sol[0])
            t.append(sol[1])
        out_s.append(s)
        out_t.append(t)
    return np.array(out_s), np.array(out_t)


@settings(max_examples=40, deadline=None)
@given(shapes, seeds)
def test_scale_is_per_cloud_per_axis_in_range(shape, seed):
    x = make(shape, seed)
    y = random_scale(x, np.random.default_rng(seed))
    assert y.shape == x.shape and y.dtype == x.dtype
    # s_d = y / x wherever x != 0; every point of a cloud shares it.
    ratio = (y / x).reshape(-1, shape[-1], 3)
    np.testing.assert_allclose(ratio, ratio[:, :1, :].repeat(shape[-1], 1), rtol=1e-5)
    lo, hi = SCALE_RANGE
    assert ratio.min() >= lo - 1e-6 and ratio.max() <= hi + 1e-6


@settings(max_examples=40, deadline=None)
@given(shapes, seeds)
def test_shift_is_per_cloud_in_range(shape, seed):
    x = make(shape, seed)
    y = random_shift(x, np.random.default_rng(seed))
    d = (y - x).reshape(-1, shape[-1], 3)
    np.testing.assert_allclose(d, d[:, :1, :].repeat(shape[-1], 1), atol=1e-6)
    lo, hi = SHIFT_RANGE
    assert d.min() >= lo - 1e-6 and d.max() <= hi + 1e-6


@settings(max_examples=25, deadline=None)
@given(st.tuples(st.integers(1, 4), st.integers(3, 40)), seeds)
def test_scale_and_shift_is_affine_with_bounds(shape, seed):
    x = make(shape, seed, np.float64)
    y = scale_and_shift(x, np.random.default_rng(seed))
    s, t = ratios_and_offsets(x, y)
    assert np.all((s > 2 / 3 - 1e-9) & (s < 1.5 + 1e-9))
    assert np.all(np.abs(t) <= 0.2 + 1e-9)
    # Bounds of the output follow from |x| <= 1: |y| <= 1.5 + 0.2.
    assert np.abs(y).max() <= 1.7 + 1e-9


@settings(max_examples=40, deadline=None)
@given(shapes, seeds)
def test_shuffle_is_a_permutation_of_each_cloud(shape, seed):
    x = make(shape, seed)
    y = shuffle_points(x, np.random.default_rng(seed))
    assert y.shape == x.shape
    xs, ys = x.reshape(-1, shape[-1], 3), y.reshape(-1, shape[-1], 3)
    for a, b in zip(xs, ys, strict=True):  # same rows, as multisets
        np.testing.assert_array_equal(a[np.lexsort(a.T)], b[np.lexsort(b.T)])


def test_shuffle_moves_points_and_batch_rows_independent():
    x = np.broadcast_to(np.arange(200, dtype=np.float32)[:, None], (2, 200, 3)).copy()
    y = shuffle_points(x, np.random.default_rng(0))
    assert not np.array_equal(y[0], x[0])
    assert not np.array_equal(y[0], y[1])


def test_same_rng_state_same_result():
    x = make((3, 50), 7)
    a = augment_point_cloud(x, np.random.default_rng(5))
    b = augment_point_cloud(x, np.random.default_rng(5))
    c = augment_point_cloud(x, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_augment_without_shuffle_keeps_order():
    x = make((40,), 1, np.float64)
    y = augment_point_cloud(x, np.random.default_rng(0), shuffle=False)
    s, t = ratios_and_offsets(x, y)
    np.testing.assert_allclose(y, x * s[0] + t[0], atol=1e-9)


def test_custom_ranges_and_identity():
    x = make((2, 9), 3)
    np.testing.assert_array_equal(random_scale(x, np.random.default_rng(0), (1, 1)), x)
    np.testing.assert_array_equal(random_shift(x, np.random.default_rng(0), (0, 0)), x)
    with pytest.raises(ValueError, match="low <= high"):
        random_scale(x, np.random.default_rng(0), (2, 1))
    with pytest.raises(ValueError, match="finite"):
        random_shift(x, np.random.default_rng(0), (0, np.inf))


@given(st.integers(1, 80), st.integers(1, 80))
def test_first_points(n, k):
    x = make((2, n), 0)
    if k > n:
        with pytest.raises(ValueError, match="only"):
            first_points(x, k)
    else:
        np.testing.assert_array_equal(first_points(x, k), x[:, :k])


@pytest.mark.parametrize(
    "bad,exc",
    [
        (np.zeros((5, 2), np.float32), ValueError),
        (np.zeros(3, np.float32), ValueError),
        (np.zeros((5, 3), np.int64), TypeError),
        ([[0.0, 0.0, 0.0]], TypeError),
    ],
)
def test_bad_inputs(bad, exc):
    with pytest.raises(exc):
        augment_point_cloud(bad, np.random.default_rng(0))


def test_first_points_bad_count():
    with pytest.raises(ValueError, match=">= 1"):
        first_points(np.zeros((4, 3), np.float32), 0)
    with pytest.raises(TypeError):
        first_points(np.zeros((4, 3), np.float32), 2.0)
