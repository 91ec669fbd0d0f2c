r"""k-nearest-neighbour graphs of batched point sets, in L2, L1 or Hamming space.

Every dynamic-graph layer of bingnn builds its graph here. Neighbour lists include the point
itself (its distance is 0), as in DGCNN. Neighbours are ordered by (distance, index): ties go to
the smaller index, so the graph is deterministic and the native engine reproduces it bit for bit.

Distances (``pairwise_distance``):

* ``"l2"`` on 3-D points (the xyz input of every model) is computed elementwise in one fixed
  float32 order, with no matrix product and no reduction whose order a library picks:

  .. math::
      |x|^2 = (x_0 x_0 + x_1 x_1) + x_2 x_2, \qquad
      \langle x_i, x_j \rangle = (x_{i0} x_{j0} + x_{i1} x_{j1}) + x_{i2} x_{j2},

      d_{ij} = \max\big(0,\ (|x_i|^2 + |x_j|^2) - 2 \langle x_i, x_j \rangle\big),

  every product and sum rounded on its own (no fused multiply-add). The engine's ``l2_knn3``
  kernel computes exactly these operations, so the first graph is the same on every platform.
* ``"l2"`` on wider features uses a batched matrix product for the dot products (as the engine's
  real-feature k-NN does; equal in practice, not guaranteed at exact ties).
* ``"hamming"`` on +-1 features is the exact number of differing bits.

Selection (``knn``) keeps the ``k`` smallest by (distance, index) without sorting whole rows: on
the CPU with the native extension built, the engine's own kernels (``l2_knn3``, Hamming k-NN on
packed bits, ``select_k_rows``) build the graph; elsewhere ``torch.topk`` on a key that makes
every (distance, index) pair unique. :func:`knn_reference` is the plain stable sort they are
tested against.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bingnn import _flags

METRICS = ("l2", "l1", "hamming")

try:  # the engine's kernels; a source checkout without a build falls back to PyTorch
    from bingnn import _native
except ImportError:  # pragma: no cover - exercised only without a built extension
    _native = None


def check_point_sets(
    x: Tensor, k: int | None = None, name: str = "features", scan: bool = True
) -> None:
    """Raise a clear ``ValueError`` for inputs a k-NN cannot be built on.

    Shape checks are cheap and always run; ``scan=True`` also scans the values for NaN/inf (a
    full pass and a device synchronisation, so layers ask for it only in debug mode)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"{name} must be shaped (B, N, C), got {tuple(x.shape)}")
    b, n, c = x.shape
    if b == 0 or n == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}): need at least one point")
    if c == 0:
        raise ValueError(f"{name} has no channels (shape {tuple(x.shape)})")
    if scan and x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if k is not None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if k > n:
            raise ValueError(
                f"k = {k} neighbours requested but the point sets have only {n} points; "
                f"use k <= {n} or more points"
            )


def xyz_sq_distance(x: Tensor) -> Tensor:
    """Squared L2 distances of 3-D points in the fixed elementwise order of the module
    docstring: ``(B, N, 3)`` -> ``(B, N, N)``, same dtype (the engine's ``l2_knn3``
    arithmetic for float32)."""
    x0, x1, x2 = x[..., 0], x[..., 1], x[..., 2]
    sq = (x0 * x0 + x1 * x1) + x2 * x2
    a0, a1, a2 = x0.unsqueeze(-1), x1.unsqueeze(-1), x2.unsqueeze(-1)
    b0, b1, b2 = x0.unsqueeze(-2), x1.unsqueeze(-2), x2.unsqueeze(-2)
    # Separate kernels: PyTorch rounds every product and sum on its own (no contraction).
    dot = (a0 * b0 + a1 * b1) + a2 * b2
    d = (sq.unsqueeze(-1) + sq.unsqueeze(-2)) - 2.0 * dot
    return d.clamp_min_(0.0)


def pairwise_distance(x: Tensor, metric: str = "l2") -> Tensor:
    """Distances between all pairs of points of each set.

    Args:
        x: ``(B, N, C)`` features; for ``"hamming"`` they must be +-1.
        metric: ``"l2"`` (squared Euclidean), ``"l1"`` or ``"hamming"``.

    Returns:
        ``(B, N, N)``. For Hamming, :math:`d(x, y) = (C - \\langle x, y \\rangle) / 2`: on +-1
        features the number of differing bits, exact, as int64; on other real features (tanh
        activations of the pseudo-quantized stage) the same formula, the "relaxed" Hamming
        distance, as floats. Squared L2 of 3-D points follows the fixed order of the module
        docstring.
    """
    metric = metric.lower()
    if metric == "l2":
        if x.shape[-1] == 3:
            return xyz_sq_distance(x)
        sq = (x * x).sum(-1)
        # beta * (|x_i|^2 + |x_j|^2) + alpha * <x_i, x_j> in the GEMM's epilogue: the same
        # values as the separate subtraction (2 <x_i, x_j> is exact), one pass fewer.
        d = torch.baddbmm(sq.unsqueeze(-1) + sq.unsqueeze(-2), x, x.transpose(1, 2), alpha=-2.0)
        return d.clamp_min_(0.0)
    if metric == "l1":
        return torch.cdist(x, x, p=1.0)
    if metric == "hamming":
        c = x.shape[-1]
        dot = torch.matmul(x, x.transpose(1, 2))
        if _is_pm1(x):
            # Exact in float32 while C < 2**24; integers make the ranking exact.
            return torch.round((c - dot) * 0.5).to(torch.int64)
        # Relaxed Hamming on real features (e.g. tanh in the pseudo-quantized stage).
        return (c - dot) * 0.5
    raise ValueError(f"unknown k-NN metric {metric!r}; choose one of {', '.join(METRICS)}")


def _is_pm1(x: Tensor) -> bool:
    return bool(((x == 1) | (x == -1)).all())


def _check_metric(metric: str) -> str:
    metric = metric.lower()
    if metric not in METRICS:
        raise ValueError(f"unknown k-NN metric {metric!r}; choose one of {', '.join(METRICS)}")
    return metric


def knn(x: Tensor, k: int, metric: str = "l2") -> Tensor:
    """Indices of the ``k`` nearest neighbours of every point, self included.

    Args:
        x: ``(B, N, C)`` point features (finite).
        k: neighbours per point, ``1 <= k <= N``.
        metric: ``"l2"``, ``"l1"`` or ``"hamming"``.

    Returns:
        ``(B, N, k)`` int64 indices into the N points, nearest first, ties broken by the smaller
        index. Identical to :func:`knn_reference` on every backend.
    """
    check_point_sets(x, k)
    return knn_unchecked(x, k, metric)


def knn_unchecked(x: Tensor, k: int, metric: str = "l2") -> Tensor:
    """The k-NN of :func:`knn` on an input its caller has already checked with
    :func:`check_point_sets` (:func:`knn` with the value scan, :func:`layer_graph` with it in
    debug mode only), so no check runs twice."""
    metric = _check_metric(metric)
    with torch.no_grad():
        x = x.detach()
        if _flags.is_reference_mode():
            return knn_reference(x, k, metric)
        idx = _native_knn(x, k, metric)
        if idx is not None:
            return idx
        return select_smallest(pairwise_distance(x, metric), k)


def knn_reference(x: Tensor, k: int, metric: str = "l2") -> Tensor:
    """The plain k-NN: all distances, a stable sort of every row, the first ``k`` columns."""
    n = x.shape[1]
    with torch.no_grad():
        d = pairwise_distance(x.detach(), _check_metric(metric))
        if d.dtype == torch.int64:
            j = torch.arange(n, device=x.device)
            return torch.topk(d * n + j, k, dim=-1, largest=False, sorted=True).indices
        return torch.sort(d, dim=-1, stable=True).indices[..., :k]


def select_smallest(d: Tensor, k: int) -> Tensor:
    """Columns of the ``k`` smallest entries of every row of ``d (..., M)`` (no NaN), ordered by
    (value, column) — the stable sort's first ``k`` columns, found by selection."""
    m = d.shape[-1]
    lead = d.shape[:-1]
    if (
        _native is not None
        and d.device.type == "cpu"
        and d.dtype == torch.float32
        and hasattr(_native, "select_k_rows")
    ):
        rows = d.reshape(-1, m).contiguous().numpy()
        out = _native.select_k_rows(rows, int(k), torch.get_num_threads())
        return torch.from_numpy(out).to(torch.int64).reshape(*lead, k)
    j = torch.arange(m, device=d.device)
    if d.dtype == torch.int64:
        key = d * m + j
    elif d.dtype in (torch.float32, torch.float16, torch.bfloat16):
        # Floats order like their bit patterns read as sign-magnitude integers (+0.0 replaces
        # -0.0 first); one integer key per (value, column) pair makes the order total, so topk
        # never has to pick among ties.
        bits = (d + 0.0).view(torch.int32 if d.dtype == torch.float32 else torch.int16)
        mag = 0x7FFFFFFF if d.dtype == torch.float32 else 0x7FFF
        key = torch.where(bits < 0, bits ^ mag, bits).to(torch.int64) * m + j
    else:  # float64 bit patterns times M would overflow int64
        return torch.sort(d, dim=-1, stable=True).indices[..., :k]
    return torch.topk(key, k, dim=-1, largest=False, sorted=True).indices


def _native_knn(x: Tensor, k: int, metric: str) -> Tensor | None:
    """The engine's k-NN kernels on CPU float32 inputs where they give the identical graph;
    ``None`` where they do not apply."""
    if _native is None or x.device.type != "cpu" or x.dtype != torch.float32:
        return None
    threads = torch.get_num_threads()
    if metric == "l2" and x.shape[-1] == 3 and hasattr(_native, "l2_knn3"):
        out = _native.l2_knn3(x.contiguous().numpy(), int(k), threads)
    elif (
        metric == "hamming"
        and hasattr(_native, "hamming_knn")
        and x.shape[-1] <= 1023 * 64
        and _is_pm1(x)
    ):
        b, n, c = x.shape
        packed = _native.pack_signs(x.reshape(b * n, c).contiguous().numpy(), threads)
        out, _ = _native.hamming_knn(packed.reshape(b, n, -1), int(k), threads)
    else:
        return None
    return torch.from_numpy(out).to(torch.int64)


def gather_neighbors(x: Tensor, idx: Tensor) -> Tensor:
    """Gather neighbour features: ``x (B, N, C)``, ``idx (B, N, k)`` -> ``(B, N, k, C)``.

    Whole rows are copied (``index_select`` over the flattened points, faster than an
    element-wise ``gather``); the backward adds the rows back in index order."""
    b, n, c = x.shape
    k = idx.shape[-1]
    flat = (idx + (torch.arange(b, device=idx.device) * n).view(b, 1, 1)).reshape(-1)
    return x.reshape(b * n, c).index_select(0, flat).view(b, n, k, c)


def knn_edge_index(idx: Tensor) -> Tensor:
    """Turn ``(B, N, k)`` neighbour lists into a ``(2, B*N*k)`` edge index over the flattened
    ``B*N`` nodes, in PyG's orientation: row 0 = neighbour ``j`` (source), row 1 = centre ``i``
    (target), so messages flow ``j -> i`` as in ``MessagePassing``."""
    b, n, k = idx.shape
    offset = (torch.arange(b, device=idx.device) * n).view(b, 1, 1)
    centre = (torch.arange(n, device=idx.device).view(1, n, 1) + offset).expand(b, n, k)
    nbr = idx + offset
    return torch.stack([nbr.reshape(-1), centre.reshape(-1)], dim=0)


def layer_graph(x: Tensor, k: int, metric: str, in_channels: int, layer: str) -> Tensor:
    """The k-NN graph a point-set layer named ``layer`` runs on: its input's shapes (values too
    in debug mode) and channel count checked, then :func:`knn_unchecked`."""
    check_point_sets(x, k, scan=_flags.is_debug_enabled())
    if x.shape[-1] != in_channels:
        raise ValueError(
            f"{layer} expected {in_channels} input channels, got shape {tuple(x.shape)}"
        )
    return knn_unchecked(x, k, metric)
