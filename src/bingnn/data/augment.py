"""Training augmentations for point clouds (numpy, explicit ``np.random.Generator``).

The recipe of the paper's DGCNN training (ModelNet40): take the first ``num_points`` of the
2,048 stored points, then

.. math::  x' = x \\odot s + t, \\quad s \\sim U[2/3, 3/2]^3, \\; t \\sim U[-0.2, 0.2]^3

(one anisotropic scale ``s`` and one shift ``t`` per cloud, shared by its points), then shuffle
the points. Every function takes clouds of shape ``(..., N, 3)``: one cloud ``(N, 3)`` or a
batch ``(B, N, 3)``, each cloud with its own draw. Randomness only comes from the ``rng``
argument, so a caller that seeds it gets reproducible augmentations.

Example::

    rng = np.random.default_rng(0)
    x = augment_point_cloud(first_points(cloud, 1024), rng)
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SCALE_RANGE",
    "SHIFT_RANGE",
    "augment_point_cloud",
    "first_points",
    "random_scale",
    "random_shift",
    "scale_and_shift",
    "shuffle_points",
]

SCALE_RANGE: tuple[float, float] = (2.0 / 3.0, 3.0 / 2.0)
SHIFT_RANGE: tuple[float, float] = (-0.2, 0.2)


def _check(points: np.ndarray, name: str = "points") -> np.ndarray:
    if not isinstance(points, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(points).__name__}")
    if points.ndim < 2 or points.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (N, 3) or (B, N, 3), got {points.shape}")
    if not np.issubdtype(points.dtype, np.floating):
        raise TypeError(f"{name} must be a floating array, got dtype {points.dtype}")
    return points


def _check_range(r: tuple[float, float], name: str) -> tuple[float, float]:
    lo, hi = float(r[0]), float(r[1])
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        raise ValueError(f"{name} must be finite (low, high) with low <= high, got {r}")
    return lo, hi


def _per_cloud(points: np.ndarray, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """One uniform 3-vector per cloud: shape (..., 1, 3), broadcast over the N points."""
    return rng.uniform(lo, hi, size=points.shape[:-2] + (1, 3)).astype(points.dtype)


def random_scale(
    points: np.ndarray, rng: np.random.Generator, scale_range: tuple[float, float] = SCALE_RANGE
) -> np.ndarray:
    """Anisotropic scale: :math:`x'_{n,d} = s_d x_{n,d}`, :math:`s_d \\sim U[lo, hi]` per cloud."""
    _check(points)
    lo, hi = _check_range(scale_range, "scale_range")
    return points * _per_cloud(points, rng, lo, hi)


def random_shift(
    points: np.ndarray, rng: np.random.Generator, shift_range: tuple[float, float] = SHIFT_RANGE
) -> np.ndarray:
    """Translation: :math:`x'_{n,d} = x_{n,d} + t_d`, :math:`t_d \\sim U[lo, hi]` per cloud."""
    _check(points)
    lo, hi = _check_range(shift_range, "shift_range")
    return points + _per_cloud(points, rng, lo, hi)


def scale_and_shift(
    points: np.ndarray,
    rng: np.random.Generator,
    scale_range: tuple[float, float] = SCALE_RANGE,
    shift_range: tuple[float, float] = SHIFT_RANGE,
) -> np.ndarray:
    """:math:`x' = x \\odot s + t` (scale first, then shift), one ``s`` and ``t`` per cloud."""
    return random_shift(random_scale(points, rng, scale_range), rng, shift_range)


def shuffle_points(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Permute the ``N`` points of each cloud (an independent permutation per cloud)."""
    _check(points)
    if points.ndim == 2:
        return points[rng.permutation(points.shape[0])]
    flat = points.reshape(-1, *points.shape[-2:])
    # argsort of uniform keys = one random permutation per row, drawn in a single call.
    perm = np.argsort(rng.random(flat.shape[:2]), axis=1)
    return np.take_along_axis(flat, perm[..., None], axis=1).reshape(points.shape)


def first_points(points: np.ndarray, num_points: int) -> np.ndarray:
    """The first ``num_points`` points of each cloud (ModelNet40: 1,024 of the 2,048 stored).

    Raises:
        ValueError: ``num_points < 1`` or a cloud with fewer points.
    """
    _check(points)
    if isinstance(num_points, bool) or not isinstance(num_points, (int, np.integer)):
        raise TypeError(f"num_points must be an int, got {type(num_points).__name__}")
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    if points.shape[-2] < num_points:
        raise ValueError(
            f"asked for {num_points} points but the cloud has only {points.shape[-2]}; "
            "lower num_points"
        )
    return points[..., :num_points, :]


def augment_point_cloud(
    points: np.ndarray,
    rng: np.random.Generator,
    scale_range: tuple[float, float] = SCALE_RANGE,
    shift_range: tuple[float, float] = SHIFT_RANGE,
    shuffle: bool = True,
) -> np.ndarray:
    """The training augmentation: scale, shift, then (optionally) shuffle the points."""
    out = scale_and_shift(points, rng, scale_range, shift_range)
    return shuffle_points(out, rng) if shuffle else out
