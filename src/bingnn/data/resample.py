r"""Bring real point clouds to the model's input: a fixed number of points, centred, in the unit
sphere (numpy only, deterministic; the torch-free engine uses it).

A model trained on clouds of ``N`` points sees, at inference, clouds of any size ``n``:

* ``n > N``: **farthest-point sampling** (FPS) keeps ``N`` points spread over the whole shape
  (a random subset would leave holes and clumps the model never saw). Greedy: start at the
  point farthest from the centroid, then repeatedly add the point whose distance to the chosen
  set is largest,

  .. math:: i_{t+1} = \arg\max_i \min_{s \le t} \lVert p_i - p_{i_s} \rVert_2,

  ties to the smallest index. Cost :math:`O(nN)`; the first ``m`` indices of an FPS order are
  the FPS subsample of size ``m``.
* ``n < N`` (and ``n >= k``, the model's neighbour count): **repetition**, point ``j`` of the
  result is point ``j mod n`` of the cloud, so every point appears ``floor(N/n)`` or
  ``ceil(N/n)`` times. Duplicates sit at distance 0 from each other, which a k-NN graph
  tolerates (ties go to the smaller index).
* ``n < k``: refused; no k-NN graph with ``k`` distinct neighbours exists.

**Normalisation** (as every training cloud of bingnn: the ModelNet HDF5 releases and the
synthetic shapes): subtract the centroid :math:`c = \frac1m \sum_i p_i`, divide by the largest
norm :math:`r = \max_i \lVert p_i - c \rVert`, so the cloud fits the unit sphere and touches it.
The statistics are taken over the *distinct* points the model sees: the FPS subsample, or the
whole cloud when it is repeated (repetition must not move the centroid).

Example::

    from bingnn.data.resample import prepare_clouds
    batch = prepare_clouds([scan, mesh_sample], num_points=1024, min_points=20)  # (2, 1024, 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_NUM_POINTS",
    "farthest_point_sampling",
    "normalize_unit_sphere",
    "prepare_cloud",
    "prepare_clouds",
    "resample_indices",
    "to_model_input",
]


def farthest_point_sampling(points: np.ndarray, m: int, start: int | None = None) -> np.ndarray:
    """Indices of ``m`` farthest-point-sampled points of ``points`` ``(n, 3)``, in FPS order.

    Args:
        points: ``(n, 3)`` finite coordinates.
        m: how many to keep, ``0 <= m <= n``.
        start: first index; default the point farthest from the centroid (so the result does not
            depend on the order of the points, up to exact ties).

    Returns:
        ``(m,)`` int64, distinct indices. Duplicated points are chosen only once every distinct
        position is taken.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must have shape (n, 3), got {pts.shape}")
    n = pts.shape[0]
    if not 0 <= m <= n:
        raise ValueError(f"cannot pick {m} of {n} points")
    out = np.empty(m, dtype=np.int64)
    if m == 0:
        return out
    x, y, z = (np.ascontiguousarray(pts[:, i]) for i in range(3))
    if start is None:
        c = pts.mean(axis=0)
        start = int(np.argmax((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2))
    elif not 0 <= start < n:
        raise ValueError(f"start must be in [0, {n}), got {start}")
    dist = np.full(n, np.inf)
    d, t = np.empty(n), np.empty(n)
    cur = int(start)
    for i in range(m):
        out[i] = cur
        # d = |p - p_cur|^2, with preallocated buffers (this loop is the whole cost).
        np.subtract(x, x[cur], out=d)
        np.multiply(d, d, out=d)
        np.subtract(y, y[cur], out=t)
        np.multiply(t, t, out=t)
        d += t
        np.subtract(z, z[cur], out=t)
        np.multiply(t, t, out=t)
        d += t
        np.minimum(dist, d, out=dist)
        # A chosen point is never chosen again, even when all that is left are its duplicates.
        dist[cur] = -1.0
        cur = int(np.argmax(dist))
    return out


def resample_indices(points: np.ndarray, num_points: int) -> np.ndarray:
    """Indices taking a cloud of ``n`` points to exactly ``num_points``: FPS when ``n`` is
    larger, ``arange(num_points) % n`` (repetition) when smaller, ``arange(n)`` when equal."""
    n = len(points)
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    if n == 0:
        raise ValueError("cannot resample an empty cloud")
    if n > num_points:
        return farthest_point_sampling(points, num_points)
    return np.arange(num_points, dtype=np.int64) % n


def normalize_unit_sphere(points: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """``(p - c) / r``, float32: centroid ``c`` and radius ``r = max |p - c|`` of ``reference``
    (default ``points`` itself).

    Raises:
        ValueError: every point coincides (``r = 0``): there is no shape to scale.
    """
    pts = np.asarray(points, dtype=np.float64)
    ref = pts if reference is None else np.asarray(reference, dtype=np.float64)
    c = ref.mean(axis=0)
    r = float(np.sqrt(((ref - c) ** 2).sum(axis=1).max()))
    if not r > 0 or not np.isfinite(r):
        raise ValueError("all points coincide (the cloud has no extent to normalise)")
    return ((pts - c) / r).astype(np.float32)


def prepare_cloud(
    points: np.ndarray,
    num_points: int,
    *,
    min_points: int = 1,
    normalize: bool = True,
    name: str = "cloud",
) -> np.ndarray:
    """One cloud ``(n, 3)`` -> ``(num_points, 3)`` float32: resampled (see
    :func:`resample_indices`), then normalised into the unit sphere unless ``normalize=False``.

    Raises:
        ValueError: ``n < min_points`` (the model's ``k``), or all points coincide; the message
            starts with ``name``.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (n, 3), got {pts.shape}")
    n = pts.shape[0]
    if n < min_points:
        raise ValueError(
            f"{name}: {n} point(s), fewer than the model's k = {min_points} neighbours; give "
            f"at least {min_points} points"
        )
    if not np.isfinite(pts).all():
        raise ValueError(f"{name}: NaN or infinite coordinates; clean or drop those points")
    idx = resample_indices(pts, num_points)
    sel = pts[idx]
    if not normalize:
        return np.ascontiguousarray(sel, dtype=np.float32)
    try:
        return normalize_unit_sphere(sel, reference=sel if n > num_points else pts)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


def prepare_clouds(
    clouds: Sequence[np.ndarray] | np.ndarray,
    num_points: int,
    *,
    min_points: int = 1,
    normalize: bool = True,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """Clouds of any sizes -> one batch ``(B, num_points, 3)`` float32 (see
    :func:`prepare_cloud`; ``names`` label the errors)."""
    if isinstance(clouds, np.ndarray) and clouds.ndim == 2:
        clouds = [clouds]
    if len(clouds) == 0:
        raise ValueError("no point cloud given")
    names = list(names) if names is not None else [f"cloud {i}" for i in range(len(clouds))]
    if len(names) != len(clouds):
        raise ValueError(f"{len(names)} names for {len(clouds)} clouds")
    return np.stack([
        prepare_cloud(c, num_points, min_points=min_points, normalize=normalize, name=nm)
        for c, nm in zip(clouds, names, strict=True)
    ])


#: The point count used when neither the model nor the caller gives one (bingnn's default
#: training size, and ModelNet's).
DEFAULT_NUM_POINTS = 1024


def to_model_input(
    points: Any,
    *,
    num_points: int | None,
    min_points: int,
    normalize: bool,
) -> Any:
    """What a model's ``predict`` receives from a user -> what its forward pass expects.

    * a list/tuple of numpy clouds ``(n_i, 3)`` (any sizes) -> ``(B, N, 3)`` float32, each
      cloud prepared by :func:`prepare_cloud`; ``N`` is ``num_points`` (the model's training
      point count when known), else the clouds' common size, else :data:`DEFAULT_NUM_POINTS`;
    * an array ``(n, 3)`` or ``(B, n, 3)`` -> resampled to ``num_points`` when that is known and
      differs from ``n``, normalised when ``normalize``; otherwise returned unchanged, so
      prepared inputs run exactly as given;
    * anything else is returned unchanged (the model's own checks reject it).
    """
    if isinstance(points, (list, tuple)) and points and all(
        isinstance(c, np.ndarray) and c.ndim == 2 for c in points
    ):
        sizes = {len(c) for c in points}
        n = num_points or (sizes.pop() if len(sizes) == 1 else DEFAULT_NUM_POINTS)
        return prepare_clouds(list(points), n, min_points=min_points, normalize=normalize)
    if not isinstance(points, np.ndarray) or points.ndim not in (2, 3) or points.shape[-1] != 3:
        return points
    n = points.shape[-2]
    if not normalize and (num_points is None or n == num_points):
        return points
    if not np.issubdtype(points.dtype, np.floating) or 0 in points.shape:
        return points  # refused with the model's own message
    target = num_points or n
    if points.ndim == 2:
        return prepare_cloud(points, target, min_points=min_points, normalize=normalize)
    return prepare_clouds(list(points), target, min_points=min_points, normalize=normalize)
