"""Surface sampling of triangle meshes and fan triangulation, against direct computations."""

from __future__ import annotations

import numpy as np
import pytest

from bingnn.data.mesh import fan_triangulate, sample_surface, triangle_areas
from bingnn.data.resample import farthest_point_sampling

# Two disjoint triangles in the z = 0 plane with areas 1 and 3.
V = np.array([[0, 0, 0], [2, 0, 0], [0, 1, 0], [10, 0, 0], [13, 0, 0], [10, 2, 0]], float)
T = np.array([[0, 1, 2], [3, 4, 5]])


def barycentric_inside(p: np.ndarray, a, b, c, tol=1e-9) -> np.ndarray:
    """Whether points ``p`` (n, 3) of the triangle's plane lie inside triangle abc."""
    v0, v1, v2 = b - a, c - a, p - a
    d00, d01, d11 = v0 @ v0, v0 @ v1, v1 @ v1
    d20, d21 = v2 @ v0, v2 @ v1
    den = d00 * d11 - d01 * d01
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    return (v >= -tol) & (w >= -tol) & (v + w <= 1 + tol)


def test_areas():
    np.testing.assert_allclose(triangle_areas(V, T), [1.0, 3.0])


def test_area_weighted_and_on_the_surface():
    pts = sample_surface(V, T, 40_000, seed=0)
    assert pts.shape == (40_000, 3)
    first = pts[:, 0] < 5
    # Binomial(40000, 1/4): standard deviation 0.0022 of the fraction.
    assert abs(first.mean() - 0.25) < 0.012
    assert barycentric_inside(pts[first], *V[:3]).all()
    assert barycentric_inside(pts[~first], *V[3:]).all()
    # Uniform inside a triangle: the mean is its centroid.
    np.testing.assert_allclose(pts[~first].mean(0), V[3:].mean(0), atol=0.03)


def test_seeded():
    a = sample_surface(V, T, 100, seed=5)
    np.testing.assert_array_equal(a, sample_surface(V, T, 100, seed=5))
    assert not np.array_equal(a, sample_surface(V, T, 100, seed=6))
    rng = np.random.default_rng(5)
    np.testing.assert_array_equal(a, sample_surface(V, T, 100, rng=rng))


def test_zero_area_triangles_never_sampled():
    v = np.vstack([V, [[50, 50, 50]]])
    t = np.array([[6, 6, 6], [0, 1, 2], [0, 0, 1]])  # two degenerate triangles around a real one
    pts = sample_surface(v, t, 2000, seed=1)
    assert barycentric_inside(pts, *V[:3]).all()
    with pytest.raises(ValueError, match="no surface"):
        sample_surface(v, np.array([[6, 6, 6], [0, 0, 1]]), 10)


def test_oversample_is_fps_of_dense_sample():
    dense = sample_surface(V, T, 400, seed=2)
    got = sample_surface(V, T, 100, seed=2, oversample=4)
    np.testing.assert_array_equal(got, dense[farthest_point_sampling(dense, 100)])


@pytest.mark.parametrize(
    "t,match",
    [
        (np.array([[0, 1, 6]]), r"indices must lie in \[0, 6\)"),
        (np.array([[0, 1, -1]]), "indices"),
        (np.zeros((0, 3), int), "F >= 1"),
        (np.array([[0.0, 1, 2]]), "integer"),
    ],
)
def test_bad_triangles(t, match):
    with pytest.raises(ValueError, match=match):
        sample_surface(V, t, 5)


def test_fan_triangulate():
    tri = fan_triangulate([[0, 1, 2, 3], [4, 5, 6], [7, 8], [9, 10, 11, 12, 13]])
    np.testing.assert_array_equal(
        tri, [[0, 1, 2], [0, 2, 3], [4, 5, 6], [9, 10, 11], [9, 11, 12], [9, 12, 13]]
    )
    # A convex polygon keeps its area: a unit square split in two.
    sq = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    assert triangle_areas(sq, fan_triangulate([[0, 1, 2, 3]])).sum() == pytest.approx(1.0)
    assert fan_triangulate([]).shape == (0, 3)
