"""Seeded stratified train/validation/test node splits, for graphs without a standard split.

For split seed ``s`` the nodes of each class are ordered by a hash of ``(s, node id)`` and cut
in order: with ``n_c`` nodes in class ``c`` and fractions ``(f_train, f_val, f_test)``, the
first ``round(f_train * n_c)`` go to training, the next ``round(f_val * n_c)`` to validation and
the rest to test (``round`` halves up). Every class is thus represented in each split in its
own proportion, and the three splits partition the labelled nodes.

The order is the ascending 64-bit SplitMix64 hash of ``SplitMix64(s) + node id``, written out
here rather than drawn from numpy's generators, so a split depends on nothing but the seed,
the labels and the fractions: the same on every machine and numpy version. numpy only (no
PyTorch).

    >>> import numpy as np
    >>> train, val, test = stratified_split(np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1]), seed=0)
    >>> len(train), len(val), len(test)
    (6, 2, 2)
"""

from __future__ import annotations

import numpy as np

__all__ = ["splitmix64", "stratified_split"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of ``x + golden ratio`` (Steele, Lea, Flood 2014), element-wise on
    uint64 with wrap-around arithmetic."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _round_half_up(v: float) -> int:
    return int(np.floor(v + 0.5 + 1e-9))


def stratified_split(
    labels: np.ndarray,
    seed: int,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split the labelled nodes (label ``>= 0``) class by class (module docstring).

    Args:
        labels: ``(N,)`` integer class of each node; negative labels mark unlabelled nodes,
            which go to no split.
        seed: split seed (any integer; taken modulo 2**64).
        fractions: training, validation and test fractions, non-negative, summing to 1.

    Returns:
        ``(train, val, test)``: sorted int64 node ids, pairwise disjoint.

    Raises:
        ValueError: labels not a 1-D integer array, or bad fractions.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {y.dtype} of shape {y.shape}")
    f = tuple(float(v) for v in fractions)
    if len(f) != 3 or min(f) < 0 or abs(sum(f) - 1.0) > 1e-6:
        raise ValueError(
            f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    with np.errstate(over="ignore"):
        base = splitmix64(np.array([int(seed) % (1 << 64)], dtype=np.uint64))[0]
        keys = splitmix64(base + np.arange(y.size, dtype=np.uint64))
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in np.unique(y[y >= 0]):
        members = np.flatnonzero(y == c)
        members = members[np.argsort(keys[members], kind="stable")]
        n = members.size
        n_train = _round_half_up(f[0] * n)
        n_val = min(_round_half_up(f[1] * n), n - n_train)
        parts[0].append(members[:n_train])
        parts[1].append(members[n_train:n_train + n_val])
        parts[2].append(members[n_train + n_val:])
    out = tuple(np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64)
                for p in parts)
    return out  # type: ignore[return-value]
