r"""Triangle meshes as point clouds: fan triangulation and area-weighted surface sampling (numpy).

A mesh is ``vertices`` ``(V, 3)`` float64 and ``triangles`` ``(F, 3)`` int64 (vertex indices).
Sampling draws each point in two steps, which makes it uniform over the surface area:

1. a triangle :math:`t` with probability :math:`A_t / \sum_s A_s`, where
   :math:`A_t = \tfrac12 \lVert (b - a) \times (c - a) \rVert`;
2. a point :math:`a + u (b - a) + v (c - a)` with :math:`u, v \sim U[0, 1]`, folded into the
   triangle (:math:`(u, v) \to (1 - u, 1 - v)` when :math:`u + v > 1`).

With ``oversample = s > 1``, ``s * n`` points are drawn that way, then ``n`` of them are kept by
farthest-point sampling (:func:`bingnn.data.resample.farthest_point_sampling`): evenly spread
points, close to the Poisson-disk sampling of the ModelNet HDF5 releases. Every draw comes from
the ``rng`` (or ``seed``) given, so a seed fixes the sample.

Example::

    from bingnn.data.mesh import sample_surface
    pts = sample_surface(vertices, triangles, 1024, seed=0)      # (1024, 3) float64
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .resample import farthest_point_sampling

__all__ = ["fan_triangulate", "sample_surface", "triangle_areas"]


def fan_triangulate(polygons: Iterable[Sequence[int]]) -> np.ndarray:
    """Polygons (vertex index lists, ``len >= 3``) -> triangles ``(F, 3)`` int64.

    A polygon :math:`(v_0, \\dots, v_{m-1})` becomes the fan :math:`(v_0, v_i, v_{i+1})`,
    :math:`1 \\le i \\le m - 2` (exact for convex polygons, which mesh files nearly always hold;
    a concave one keeps its area but may cover some of it twice). Shorter entries (points,
    edges) have no area and are dropped.
    """
    tris: list[tuple[int, int, int]] = []
    for poly in polygons:
        p = list(poly)
        for i in range(1, len(p) - 1):
            tris.append((p[0], p[i], p[i + 1]))
    return np.array(tris, dtype=np.int64).reshape(-1, 3)


def triangle_areas(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """``(F,)`` float64 areas of ``triangles`` over ``vertices``."""
    v = np.asarray(vertices, dtype=np.float64)
    a, b, c = (v[triangles[:, i]] for i in range(3))
    with np.errstate(over="ignore", invalid="ignore"):
        return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def sample_surface(
    vertices: np.ndarray,
    triangles: np.ndarray,
    n: int,
    *,
    seed: int | np.random.SeedSequence | None = 0,
    rng: np.random.Generator | None = None,
    oversample: int = 1,
) -> np.ndarray:
    """``n`` points on the surface of a mesh, area-weighted, ``(n, 3)`` float64.

    Args:
        vertices: ``(V, 3)`` finite coordinates.
        triangles: ``(F, 3)`` indices into ``vertices``, ``F >= 1``.
        n: points to draw, ``>= 1``.
        seed: seed of the draw (ignored when ``rng`` is given).
        rng: the generator to draw from.
        oversample: draw ``oversample * n`` points, keep ``n`` by farthest-point sampling.

    Raises:
        ValueError: no triangle, an index out of range, or a surface of zero or non-finite area.
    """
    v = np.asarray(vertices, dtype=np.float64)
    t = np.asarray(triangles)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape (V, 3), got {v.shape}")
    if t.ndim != 2 or t.shape[1] != 3 or t.shape[0] == 0:
        raise ValueError(f"triangles must have shape (F, 3) with F >= 1, got {t.shape}")
    if not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"triangles must hold integer indices, got {t.dtype}")
    if t.min() < 0 or t.max() >= len(v):
        raise ValueError(f"triangle indices must lie in [0, {len(v)}), got [{t.min()}, {t.max()}]")
    if n < 1 or oversample < 1:
        raise ValueError(f"n and oversample must be >= 1, got {n} and {oversample}")
    area = triangle_areas(v, t)
    cum = np.cumsum(area)
    total = float(cum[-1])
    if not np.isfinite(total) or total <= 0:
        raise ValueError(
            "the mesh has no surface to sample (its triangles have zero or non-finite area)"
        )
    rng = rng if rng is not None else np.random.default_rng(seed)
    m = n * oversample
    # side="right": a uniform draw u picks the first triangle with cum > u, so triangles of zero
    # area (cum flat) are never chosen.
    pick = np.searchsorted(cum, rng.uniform(0.0, total, size=m), side="right")
    pick = np.minimum(pick, len(t) - 1)
    uv = rng.uniform(size=(m, 2))
    fold = uv.sum(axis=1) > 1.0
    uv[fold] = 1.0 - uv[fold]
    tri = t[pick]
    a = v[tri[:, 0]]
    pts = a + uv[:, :1] * (v[tri[:, 1]] - a) + uv[:, 1:] * (v[tri[:, 2]] - a)
    if oversample > 1:
        pts = pts[farthest_point_sampling(pts, n)]
    return pts
