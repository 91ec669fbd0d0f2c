"""Farthest-point sampling, repetition and unit-sphere normalisation vs plain numpy references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bingnn.data.resample import (
    farthest_point_sampling,
    normalize_unit_sphere,
    prepare_cloud,
    prepare_clouds,
    resample_indices,
)


def fps_reference(points: np.ndarray, m: int, start: int) -> list[int]:
    """FPS by its definition, one point at a time in plain Python: the next index maximises the
    distance to the nearest chosen point, ties to the smallest index; chosen points excluded."""
    pts = points.astype(np.float64)
    chosen = [start]
    while len(chosen) < m:
        best, best_d = -1, -1.0
        for i in range(len(pts)):
            if i in chosen:
                continue
            d = min(float(((pts[i] - pts[j]) ** 2).sum()) for j in chosen)
            if d > best_d:
                best, best_d = i, d
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("n,m", [(1, 1), (7, 3), (50, 50), (65, 17), (130, 64)])
def test_fps_matches_reference(n, m):
    pts = np.random.default_rng(n).normal(size=(n, 3))
    c = pts.mean(0)
    start = int(np.argmax(((pts - c) ** 2).sum(1)))
    got = farthest_point_sampling(pts, m)
    assert got.tolist() == fps_reference(pts, m, start)
    assert got.dtype == np.int64


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 40), st.just(3)),
           elements=st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0])),
    st.data(),
)
def test_fps_property_with_duplicates(pts, data):
    # Few distinct values: many exact duplicates and distance ties.
    m = data.draw(st.integers(0, len(pts)))
    start = data.draw(st.integers(0, len(pts) - 1))
    got = farthest_point_sampling(pts, m, start=start)
    assert len(set(got.tolist())) == m  # distinct indices
    want = fps_reference(pts, m, start) if m else []
    assert got.tolist() == want


def test_fps_is_deterministic_and_order_independent():
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(500, 3))
    a = farthest_point_sampling(pts, 64)
    np.testing.assert_array_equal(a, farthest_point_sampling(pts.copy(), 64))
    perm = rng.permutation(500)
    b = farthest_point_sampling(pts[perm], 64)
    # The same points are chosen whatever the file order (the start does not depend on it).
    np.testing.assert_array_equal(np.sort(perm[b]), np.sort(a))
    # Prefix property: the first m of an FPS order are the FPS of size m.
    np.testing.assert_array_equal(farthest_point_sampling(pts, 10), a[:10])


def test_fps_errors():
    with pytest.raises(ValueError, match="cannot pick 5 of 4"):
        farthest_point_sampling(np.zeros((4, 3)), 5)
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        farthest_point_sampling(np.zeros((4, 2)), 1)
    with pytest.raises(ValueError, match="start"):
        farthest_point_sampling(np.zeros((4, 3)), 1, start=4)


def test_resample_indices_repetition_and_identity():
    pts = np.zeros((7, 3))
    np.testing.assert_array_equal(resample_indices(pts, 7), np.arange(7))
    np.testing.assert_array_equal(resample_indices(pts, 16), np.arange(16) % 7)
    counts = np.bincount(resample_indices(pts, 16), minlength=7)
    assert counts.min() == 2 and counts.max() == 3


def test_normalize_reference():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-5, 20, size=(100, 3))
    got = normalize_unit_sphere(pts)
    c = pts.mean(0)
    r = np.sqrt(((pts - c) ** 2).sum(1)).max()
    np.testing.assert_allclose(got, (pts - c) / r, rtol=1e-6, atol=1e-7)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1).max(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(got.mean(0), 0, atol=1e-6)
    with pytest.raises(ValueError, match="coincide"):
        normalize_unit_sphere(np.ones((5, 3)))


@pytest.mark.parametrize("n", [10, 200, 1024, 5000])
def test_prepare_cloud_sizes(n):
    pts = np.random.default_rng(n).normal(size=(n, 3)) * 30 + 7
    out = prepare_cloud(pts, 1024, min_points=10)
    assert out.shape == (1024, 3) and out.dtype == np.float32
    assert np.linalg.norm(out, axis=1).max() == pytest.approx(1.0, rel=1e-6)
    if n > 1024:  # FPS subsample: distinct points, centred on themselves
        np.testing.assert_allclose(out.mean(0), 0, atol=1e-5)
        assert len(np.unique(out, axis=0)) == 1024
    else:  # repetition: centred on the original cloud's centroid
        c, r = pts.mean(0), np.sqrt(((pts - pts.mean(0)) ** 2).sum(1)).max()
        np.testing.assert_allclose(out[:n], (pts - c) / r, rtol=1e-5, atol=1e-6)
        assert len(np.unique(out, axis=0)) == n


def test_prepare_no_normalize_and_errors():
    pts = np.random.default_rng(0).normal(size=(30, 3)) * 100
    raw = prepare_cloud(pts, 30, normalize=False)
    np.testing.assert_array_equal(raw, pts.astype(np.float32))
    with pytest.raises(ValueError, match="scan.ply: 5 point.*k = 20"):
        prepare_cloud(pts[:5], 64, min_points=20, name="scan.ply")
    with pytest.raises(ValueError, match="a: all points coincide"):
        prepare_cloud(np.ones((40, 3)), 64, min_points=20, name="a")
    with pytest.raises(ValueError, match="NaN"):
        prepare_cloud(np.full((40, 3), np.nan), 64)


def test_prepare_clouds_mixed_sizes():
    rng = np.random.default_rng(1)
    clouds = [rng.normal(size=(n, 3)) for n in (10, 200, 1024, 5000)]
    batch = prepare_clouds(clouds, 256, min_points=10, names=list("abcd"))
    assert batch.shape == (4, 256, 3)
    for b, c in zip(batch, clouds, strict=True):
        np.testing.assert_array_equal(b, prepare_cloud(c, 256, min_points=10))
