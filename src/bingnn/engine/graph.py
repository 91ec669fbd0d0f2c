r"""Graph inputs of the engine's node models: the edge list, the node features, checked once.

:class:`Graph` takes an edge index in PyTorch Geometric's orientation (``edge_index[0]`` the
source node :math:`j`, ``edge_index[1]`` the target node :math:`i`; a message flows
:math:`j \to i`) and stores the in-edges of every node contiguously (CSR by target), in the
order the edges were given: that is the order in which PyG sums the messages of a node, and
the order the engine sums them in. Self-loops and duplicate edges are kept as given (a mean
counts a duplicate twice, as PyG does); :meth:`Graph.gcn` derives GCN's normalised graph.

:func:`node_features` accepts a dense ``(N, F)`` float array or a sparse CSR matrix
(``scipy.sparse``, used only if the caller passes one: scipy is not an engine dependency).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bingnn.engine import _graph_ops as G

__all__ = ["Features", "Graph", "node_features"]

MAX_NODES = 2**31 - 1


def _reject_torch(x: Any, name: str) -> None:
    if type(x).__module__.startswith("torch"):
        raise TypeError(f"{name} is a torch tensor; pass a numpy array ({name}.numpy())")


class Graph:
    """A directed graph of ``num_nodes`` nodes stored by target.

    Args:
        edge_index: ``(2, E)`` int64 (or int32) array, row 0 the sources, row 1 the targets,
            every entry in ``[0, num_nodes)``.
        num_nodes: number of nodes ``N``.

    Attributes:
        indptr: ``(N + 1,)`` int64: the in-edges of node ``i`` are entries
            ``indptr[i]:indptr[i + 1]``.
        indices: ``(E,)`` int32 source node of each entry, in edge order within a node.

    Raises:
        TypeError / ValueError: a malformed edge index (one line saying what to fix).
    """

    def __init__(self, edge_index: Any, num_nodes: int, *, native: bool = True,
                 num_threads: int | None = None) -> None:
        if isinstance(num_nodes, bool) or not isinstance(num_nodes, (int, np.integer)):
            raise TypeError(f"num_nodes must be an int, got {type(num_nodes).__name__}")
        n = int(num_nodes)
        if not 0 <= n <= MAX_NODES:
            raise ValueError(f"num_nodes must be in [0, {MAX_NODES}], got {n}")
        _reject_torch(edge_index, "edge_index")
        if not isinstance(edge_index, np.ndarray):
            try:
                edge_index = np.asarray(edge_index)
            except Exception as e:  # noqa: BLE001 - ragged lists and the like
                raise TypeError(f"edge_index must be a (2, E) integer array: {e}") from e
        if edge_index.dtype == np.bool_ or not np.issubdtype(edge_index.dtype, np.integer):
            raise TypeError(
                f"edge_index must hold integer node indices (int64), got dtype {edge_index.dtype}"
            )
        if edge_index.ndim != 2 or edge_index.shape[0] != 2:
            hint = " (transpose it: edge_index.T)" if (
                edge_index.ndim == 2 and edge_index.shape[1] == 2) else ""
            raise ValueError(f"edge_index must have shape (2, E), got {edge_index.shape}{hint}")
        src = np.ascontiguousarray(edge_index[0], dtype=np.int64)
        dst = np.ascontiguousarray(edge_index[1], dtype=np.int64)
        if src.size:
            lo, hi = int(min(src.min(), dst.min())), int(max(src.max(), dst.max()))
            if lo < 0:
                raise ValueError("edge_index contains negative node indices")
            if hi >= n:
                raise ValueError(
                    f"edge_index refers to node {hi} but the graph has {n} nodes (features "
                    "rows); drop or remap the out-of-range edges"
                )
        self.num_nodes = n
        self.num_edges = int(src.size)
        self._native, self._threads = native, num_threads
        self.indptr, self.indices = G.csr_by_target(src, dst, n, native, num_threads)
        self._gcn: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def degrees(self) -> np.ndarray:
        """In-degree of every node (duplicates and self-loops counted), int64."""
        return np.diff(self.indptr)

    def gcn(self, fill: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r"""GCN's normalised graph as PyG's ``gcn_norm`` builds it: self-loops dropped, one
        self-loop of weight ``fill`` appended after the in-edges of every node, and the weight
        of edge :math:`j \to i` set to :math:`d_j^{-1/2} w_{ji} d_i^{-1/2}` with
        :math:`d_i = \sum_j w_{ji}` (float32, PyG's order of operations). Cached per ``fill``.

        Returns ``(indptr, indices, weights)``."""
        if fill not in self._gcn:
            self._gcn[fill] = G.gcn_csr(self.indptr, self.indices, float(fill), self._native,
                                        self._threads)
        return self._gcn[fill]

    def __repr__(self) -> str:
        return f"Graph(num_nodes={self.num_nodes}, num_edges={self.num_edges})"


@dataclass
class Features:
    """Node features as the engine reads them: dense ``(N, F)`` float32 (``dense``), or CSR
    (``indptr`` int64, ``indices`` int32 sorted within each row and unique, ``data``
    float32)."""

    num_nodes: int
    channels: int
    dense: np.ndarray | None = None
    indptr: np.ndarray | None = None
    indices: np.ndarray | None = None
    data: np.ndarray | None = None
    #: every feature is an integer (0/1 bag-of-words): the first layer's sums are exact;
    #: ``None`` until :meth:`stats` scans dense features
    integral: bool | None = False
    #: the largest sum of |x| over the features of one node (an upper bound once a pass of
    #: the first layer in int8 succeeded without a scan: 127)
    max_l1: float | None = float("inf")

    def stats(self) -> tuple[bool, float]:
        """``(integral, max_l1)``; dense features are scanned on first use, which refuses NaN
        and infinite values (the first layer's int8 pass, when it succeeds, proves them finite
        and sets these without a scan: ``bingnn.engine._graph_ops.signed_linear``)."""
        if self.integral is None or self.max_l1 is None:
            finite, integral, max_l1 = G.feature_stats(self.dense)
            _refuse_nonfinite(finite, "node features")
            self.integral, self.max_l1 = bool(integral), float(max_l1)
        return bool(self.integral), float(self.max_l1)

    def rows(self, rows: np.ndarray | None) -> Features:
        """The features of the nodes ``rows`` (sorted int64), or all of them for ``None``."""
        if rows is None:
            return self
        integral, max_l1 = self.stats()  # every node's values checked, not only these rows'
        stats = {"integral": integral, "max_l1": max_l1}
        if self.dense is not None:
            return Features(int(rows.size), self.channels, dense=self.dense[rows], **stats)
        indptr, order = G.gather_rows(self.indptr, rows)
        return Features(int(rows.size), self.channels, indptr=indptr,
                        indices=self.indices[order], data=self.data[order], **stats)


def _as_float32(values: np.ndarray, name: str) -> np.ndarray:
    if values.dtype == np.bool_ or not np.issubdtype(values.dtype, np.floating):
        raise TypeError(
            f"{name} must be a float array (float32), got dtype {values.dtype}; cast it with "
            ".astype(np.float32)"
        )
    if values.dtype.itemsize > 4:
        finite = np.isfinite(values)
        if finite.all() and values.size and np.abs(values).max() > np.finfo(np.float32).max:
            raise ValueError(f"{name} have values too large for float32; rescale them")
    return values.astype(np.float32, copy=False)


def _refuse_nonfinite(finite: bool, name: str) -> None:
    if not finite:
        raise ValueError(f"{name} contain NaN or infinite values; clean or impute them first")


def node_features(x: Any, channels: int) -> Features:
    """Check and convert node features (dense ``(N, F)`` float or a sparse matrix) with
    ``F = channels``.

    Raises:
        TypeError / ValueError: wrong type or dtype, wrong shape or feature width, NaN or
            infinite values (one line saying what to fix).
    """
    _reject_torch(x, "x")
    if hasattr(x, "tocsr") and hasattr(x, "format") and hasattr(x, "shape"):
        return _sparse_features(x, channels)
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as e:  # noqa: BLE001
            raise TypeError(f"x must be an (N, {channels}) float32 array: {e}") from e
    if x.ndim != 2:
        raise ValueError(f"x must have shape (N, {channels}) (one row per node), got {x.shape}")
    if x.shape[1] != channels:
        raise ValueError(
            f"x has {x.shape[1]} features per node but the model was trained on {channels}"
        )
    dense = np.ascontiguousarray(_as_float32(x, "node features"))
    # checked (NaN, inf) and measured lazily: Features.stats
    return Features(int(x.shape[0]), channels, dense=dense, integral=None, max_l1=None)


def _sparse_features(x: Any, channels: int) -> Features:
    shape = tuple(int(s) for s in x.shape)
    if len(shape) != 2:
        raise ValueError(f"x must have shape (N, {channels}), got {shape}")
    if shape[1] != channels:
        raise ValueError(
            f"x has {shape[1]} features per node but the model was trained on {channels}"
        )
    csr = x.tocsr(copy=True) if x.format == "csr" else x.tocsr()
    data = np.asarray(csr.data)
    if data.dtype == np.bool_ or not np.issubdtype(data.dtype, np.floating):
        raise TypeError(
            f"sparse x must hold float values (float32), got dtype {data.dtype}; cast it with "
            ".astype(np.float32)"
        )
    csr.sum_duplicates()  # also sorts the column indices of each row
    data = np.ascontiguousarray(_as_float32(np.asarray(csr.data), "node features"))
    _refuse_nonfinite(bool(np.isfinite(data).all()), "node features")
    indptr = np.ascontiguousarray(csr.indptr, dtype=np.int64)
    rows = np.repeat(np.arange(shape[0]), np.diff(indptr))
    row_l1 = np.bincount(rows, weights=np.abs(data.astype(np.float64)), minlength=shape[0])
    return Features(
        shape[0], channels, indptr=indptr,
        indices=np.ascontiguousarray(csr.indices, dtype=np.int32), data=data,
        integral=bool((data == np.rint(data)).all()),
        max_l1=float(row_l1.max(initial=0.0)),
    )
