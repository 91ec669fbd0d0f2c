"""Seeded, stratified subsets and validation splits of a labelled set (numpy only).

Class-sorted files (ModelNet's HDF5 release stores shapes grouped by class) make "the first N"
a handful of classes; every subset bingnn takes is therefore *stratified*: each class keeps
its share of the set, up to rounding, and the members of a class are drawn at random from a
generator seeded with ``seed``, so the same call gives the same indices on every machine.

Rounding uses the largest-remainder rule: class ``c`` with ``n_c`` of ``M`` items gets
``floor(n * n_c / M)`` items, and the ``n - sum floor(...)`` items left over go to the classes
with the largest fractional parts (ties: the smaller class index). The total is exactly ``n``.

Example::

    train_idx, val_idx = stratified_split(labels, 0.1, seed=0)   # 90% / 10%
    few = stratified_subset(labels, 100, seed=0)                   # 100 indices, every class
"""

from __future__ import annotations

import numpy as np

__all__ = ["class_quotas", "stratified_split", "stratified_subset"]


def _labels(labels: np.ndarray) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"labels must be integers, got dtype {y.dtype}")
    if y.size and y.min() < 0:
        raise ValueError(f"labels must be >= 0, got {int(y.min())}")
    return y.astype(np.int64, copy=False)


def class_quotas(counts: np.ndarray, n: int) -> np.ndarray:
    """How many of ``n`` items each class gets when ``counts[c]`` items of class ``c`` exist
    (proportional, largest-remainder rounding; never more than ``counts[c]``)."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if not 0 <= n <= total:
        raise ValueError(f"cannot take {n} items from a set of {total}")
    if total == 0:
        return np.zeros_like(counts)
    exact = counts * n / total
    quota = np.floor(exact).astype(np.int64)
    left = n - int(quota.sum())
    # largest fractional part first; a stable sort keeps the smaller class first on ties
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[:left]] += 1
    return quota


def _draw(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Boolean mask of ``n`` stratified members of ``y``."""
    counts = np.bincount(y) if y.size else np.zeros(0, dtype=np.int64)
    quota = class_quotas(counts, n)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5B17]))
    chosen = np.zeros(y.size, dtype=bool)
    for c in np.flatnonzero(quota):
        members = np.flatnonzero(y == c)
        chosen[rng.choice(members, size=int(quota[c]), replace=False)] = True
    return chosen


def stratified_subset(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` items of ``labels``, stratified by class, seeded, in ascending order.

    Args:
        labels: ``(M,)`` integer class indices.
        n: subset size, ``0 <= n <= M`` (``n = M`` returns every index).
        seed: seed of the draw.

    Returns:
        ``(n,)`` int64 indices into ``labels``, sorted.
    """
    y = _labels(labels)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"subset size must be an integer, got {n!r}")
    if not 0 <= n <= y.size:
        raise ValueError(f"cannot take a subset of {n} from {y.size} items")
    return np.flatnonzero(_draw(y, int(n), seed)).astype(np.int64)


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``labels`` into a kept part and a held-out part of ``round(fraction * M)`` items,
    stratified by class and seeded.

    Args:
        labels: ``(M,)`` integer class indices.
        fraction: held-out share in ``[0, 1)`` (e.g. ``0.1`` for a 10% validation split).
        seed: seed of the draw.

    Returns:
        ``(kept, held)``: disjoint sorted int64 index arrays whose union is ``range(M)``.
    """
    y = _labels(labels)
    if not (isinstance(fraction, (int, float)) and 0.0 <= float(fraction) < 1.0):
        raise ValueError(f"the held-out fraction must be in [0, 1), got {fraction!r}")
    held = _draw(y, int(round(float(fraction) * y.size)), seed)
    return np.flatnonzero(~held).astype(np.int64), np.flatnonzero(held).astype(np.int64)
