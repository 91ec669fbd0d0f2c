"""k-nearest-neighbour graphs of batched point sets, in L2, L1 or Hamming space.

Every dynamic-graph layer of bingnn builds its graph here. Neighbour lists include the point
itself (its distance is 0), as in DGCNN. Ties are broken by the smaller neighbour index, so the
graph is deterministic and the native engine reproduces it bit for bit.
"""

from __future__ import annotations

import torch
from torch import Tensor

METRICS = ("l2", "l1", "hamming")


def check_point_sets(x: Tensor, k: int | None = None, name: str = "features") -> None:
    """Raise a clear ``ValueError`` for inputs a k-NN cannot be built on."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"{name} must be shaped (B, N, C), got {tuple(x.shape)}")
    b, n, c = x.shape
    if b == 0 or n == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}): need at least one point")
    if c == 0:
        raise ValueError(f"{name} has no channels (shape {tuple(x.shape)})")
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if k is not None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if k > n:
            raise ValueError(
                f"k = {k} neighbours requested but the point sets have only {n} points; "
                f"use k <= {n} or more points"
            )


def pairwise_distance(x: Tensor, metric: str = "l2") -> Tensor:
    """Distances between all pairs of points of each set.

    Args:
        x: ``(B, N, C)`` features; for ``"hamming"`` they must be +-1.
        metric: ``"l2"`` (squared Euclidean), ``"l1"`` or ``"hamming"``.

    Returns:
        ``(B, N, N)``. For Hamming, :math:`d(x, y) = (C - \\langle x, y \\rangle) / 2`: on +-1
        features the number of differing bits, exact, as int64; on other real features (tanh
        activations of the pseudo-quantized stage) the same formula, the "relaxed" Hamming
        distance, as floats.
    """
    metric = metric.lower()
    if metric == "l2":
        sq = (x * x).sum(-1)
        d = sq.unsqueeze(-1) + sq.unsqueeze(-2) - 2.0 * torch.matmul(x, x.transpose(1, 2))
        return d.clamp_min(0.0)
    if metric == "l1":
        return torch.cdist(x, x, p=1.0)
    if metric == "hamming":
        c = x.shape[-1]
        dot = torch.matmul(x, x.transpose(1, 2))
        if ((x == 1) | (x == -1)).all():
            # Exact in float32 while C < 2**24; integers make the ranking exact.
            return torch.round((c - dot) * 0.5).to(torch.int64)
        # Relaxed Hamming on real features (e.g. tanh in the pseudo-quantized stage).
        return (c - dot) * 0.5
    raise ValueError(f"unknown k-NN metric {metric!r}; choose one of {', '.join(METRICS)}")


def knn(x: Tensor, k: int, metric: str = "l2") -> Tensor:
    """Indices of the ``k`` nearest neighbours of every point, self included.

    Args:
        x: ``(B, N, C)`` point features.
        k: neighbours per point, ``1 <= k <= N``.
        metric: ``"l2"``, ``"l1"`` or ``"hamming"``.

    Returns:
        ``(B, N, k)`` int64 indices into the N points, nearest first, ties broken by the smaller
        index.
    """
    check_point_sets(x, k)
    n = x.shape[1]
    with torch.no_grad():
        d = pairwise_distance(x.detach(), metric)
        if d.dtype == torch.int64:
            # Distances are small integers: one unique key per (distance, index) pair makes
            # the order total, so topk cannot pick among ties arbitrarily.
            j = torch.arange(n, device=x.device)
            key = d * n + j
            return torch.topk(key, k, dim=-1, largest=False, sorted=True).indices
        # Float distances: a stable sort keeps equal distances in index order.
        return torch.sort(d, dim=-1, stable=True).indices[..., :k]


def gather_neighbors(x: Tensor, idx: Tensor) -> Tensor:
    """Gather neighbour features: ``x (B, N, C)``, ``idx (B, N, k)`` -> ``(B, N, k, C)``."""
    b, n, c = x.shape
    k = idx.shape[-1]
    flat = idx.reshape(b, n * k, 1).expand(-1, -1, c)
    return torch.gather(x, 1, flat).reshape(b, n, k, c)


def knn_edge_index(idx: Tensor) -> Tensor:
    """Turn ``(B, N, k)`` neighbour lists into a ``(2, B*N*k)`` edge index over the flattened
    ``B*N`` nodes, in PyG's orientation: row 0 = neighbour ``j`` (source), row 1 = centre ``i``
    (target), so messages flow ``j -> i`` as in ``MessagePassing``."""
    b, n, k = idx.shape
    offset = (torch.arange(b, device=idx.device) * n).view(b, 1, 1)
    centre = (torch.arange(n, device=idx.device).view(1, n, 1) + offset).expand(b, n, k)
    nbr = idx + offset
    return torch.stack([nbr.reshape(-1), centre.reshape(-1)], dim=0)
