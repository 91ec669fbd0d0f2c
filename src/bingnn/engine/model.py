r"""The runtime model: a packed model file run with numpy and the native kernels (no PyTorch).

One class serves both families the exporter writes; the file's layer list
(:mod:`bingnn.engine.layers`) says what to compute.

**Point clouds** (a stage-3 ``BinDGCNN``, variants RF, BF1, BF2): ``logits(points)`` with
``points (B, N, 3)`` or ``(N, 3)``. Exactness: signs of integer pre-activations are exact by
construction (tabulated at export); where real numbers feed a sign, the engine repeats
PyTorch's float32 operations in PyTorch's order (x86-64 with FMA): left-to-right sums in layer
0, BatchNorm as a fused multiply-add with ATen's constants, the 3-D distance as ATen's fused dot
product, the mean pooling in ATen's cascade-sum order (exact for embedding widths that are
multiples of 32). So every k-NN graph and every bit equals PyTorch's (single-threaded
PyTorch); the logits agree to float32 rounding of the last (real) layer. The real L2 k-NN of
RF layers 1..3 uses a BLAS matmul like PyTorch, equal in practice but with no guarantee at
exact distance ties.

**Node classification** (a stage-3 ``BinSAGE`` or ``BinGCN``): ``logits(x, edge_index)`` with
node features ``x (N, F)`` float32 (dense, or a sparse CSR matrix for bag-of-words inputs) and
``edge_index (2, E)`` int64 in PyTorch Geometric's orientation (row 0 source, row 1 target),
for every node or the ``nodes`` asked for. Exactness: aggregation, BatchNorm folded into
thresholds, per-node centring and scale, rescaling and PReLU follow PyTorch's float32
operations in PyTorch's order; binary layers are exact. The first layer's product of real
features with +-1 weights is exact for 0/1 (bag-of-words) features and, for other features,
equal to PyTorch's matrix product up to float32 rounding (BLAS sums in its own order), as is
GraphSAGE's first-layer mean (the engine averages the products rather than the features). A
sign downstream could therefore differ from PyTorch's only where a real value lies within a
rounding error of its threshold; the parity tests check that none does on Cora and CiteSeer.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from bingnn.engine.format import ModelFileError, read_model_file
from bingnn.engine.graph import Graph, node_features
from bingnn.engine.layers import build_program
from bingnn.engine.runtime import Runner

__all__ = ["EngineModel", "Graph", "load"]


class EngineModel:
    """A binary GNN ready to run with numpy and the native kernels (no PyTorch).

    Build it with :func:`load`. ``num_threads`` (``None`` = the default count, see
    :mod:`bingnn.engine.kernels`) is passed to the native kernels; ``native=False`` runs the
    pure-numpy reference path instead.

    Shapes (point clouds):
        ``points (B, N, 3)`` or ``(N, 3)`` float -> :meth:`logits` ``(B, classes)`` (or
        ``(classes,)``), :meth:`predict_proba` the same, :meth:`predict` ``(B,)`` int64 (or
        a 0-d array).

    Shapes (node classification):
        ``x (N, F)`` float32 or sparse CSR, ``edge_index (2, E)`` int64 (or a :class:`Graph`
        built once and reused), ``nodes`` ``None`` (all), an int array ``(M,)`` or a boolean
        mask ``(N,)`` -> :meth:`logits` ``(N or M, classes)`` float32, :meth:`predict`
        ``(N or M,)`` int64.
    """

    def __init__(
        self,
        model: dict[str, Any],
        arrays: dict[str, np.ndarray],
        *,
        num_threads: int | None = None,
        native: bool = True,
        source: str = "model",
    ) -> None:
        self.program = build_program(model, arrays, source)
        self.meta = model
        self.task: str = self.program.task
        self.arch: str | None = model.get("arch") if isinstance(model.get("arch"), str) else None
        variant = model.get("variant")
        self.variant: str | None = variant if isinstance(variant, str) else None
        self.num_classes: int = self.program.num_classes
        self.class_names: list[str] = self.program.class_names
        self.in_channels: int = self.program.in_channels
        n = model["input"].get("num_points") if self.is_point_model else None
        #: number of points per cloud the model was trained on (``None`` if not recorded).
        self.num_points: int | None = n
        ks = [layer.params["k"] for layer in self.program.layers if "k" in layer.params]
        #: neighbours of the first k-NN (point-cloud models), else ``None``.
        self.k: int | None = ks[0] if ks else None
        self.num_threads = num_threads
        self.native = bool(native)
        self._runner = Runner(self.program, self.native, num_threads)

    @property
    def is_point_model(self) -> bool:
        return self.task == "point_cloud_classification"

    # ------------------------------------------------------------------ public API

    def logits(self, x: Any, edge_index: Any = None, *, nodes: Any = None,
               normalize: bool = False) -> np.ndarray:
        """Class scores, float32.

        Point clouds: ``logits(points)``: ``(B, N, 3)`` -> ``(B, classes)``; ``(N, 3)`` ->
        ``(classes,)``; a list of ``B`` clouds ``(n_i, 3)`` of any sizes -> ``(B, classes)``.
        Real inputs (see :meth:`_real_input`): clouds are brought to the model's training
        point count when the file records it (farthest-point subsampling, or repetition for
        smaller clouds; fewer than ``k`` points are refused); ``normalize=True`` centres each
        cloud and scales it into the unit sphere as the training clouds were. Arrays of the
        right size run exactly as given (``normalize=False``, the default).

        Nodes: ``logits(x, edge_index, nodes=None)`` -> ``(N, classes)``, or one row per entry
        of ``nodes``.
        """
        if self.is_point_model:
            self._no_graph_args(edge_index, nodes)
            pts, single = self._check_points(self._real_input(x, normalize))
            out = self._runner.run_points(pts)
            return out[0] if single else out
        if normalize:
            raise TypeError("normalize applies to point clouds; node features are used as given")
        feats, graph, rows, order = self._check_nodes(x, edge_index, nodes)
        out = self._runner.run_nodes(feats, graph, rows)
        return out if order is None else out[order]

    def predict_proba(self, x: Any, edge_index: Any = None, *, nodes: Any = None,
                      normalize: bool = False) -> np.ndarray:
        """Softmax of :meth:`logits` (float32, same shapes)."""
        z = self.logits(x, edge_index, nodes=nodes, normalize=normalize).astype(np.float64)
        z = np.exp(z - z.max(axis=-1, keepdims=True))
        return (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)

    def predict(self, x: Any, edge_index: Any = None, *, nodes: Any = None,
                normalize: bool = False) -> np.ndarray:
        """Predicted class indices (int64): ``(B,)`` (a 0-d array for one ``(N, 3)`` cloud), or
        one per node."""
        scores = self.logits(x, edge_index, nodes=nodes, normalize=normalize)
        return np.asarray(np.argmax(scores, axis=-1), dtype=np.int64)

    def trace(self, x: Any, edge_index: Any = None, *, nodes: Any = None
              ) -> dict[str, np.ndarray]:
        """Every named value of one forward pass (for tests and debugging). Point clouds: per
        layer the neighbour lists ``idx{l}`` and the node features ``x{l}`` (packed bits for
        BF, real for RF), ``pooled``, ``fc1_bits``, ``fc2_bits`` (packed), ``h2`` and
        ``logits``. Nodes: the values the file's layers write (``a{l}`` aggregates, ``b{l}_*``
        packed signs, ``h{l}`` hidden features, ..., ``logits``), each over the rows computed
        (all nodes unless ``nodes`` is given); computed without fusing layers, so every value
        exists (the fused pass of :meth:`logits` gives the same logits)."""
        tr: dict[str, np.ndarray] = {}
        if self.is_point_model:
            self._no_graph_args(edge_index, nodes)
            pts, _ = self._check_points(x)
            self._runner.run_points(pts, tr)
            return tr
        feats, graph, rows, order = self._check_nodes(x, edge_index, nodes)
        Runner(self.program, self.native, self.num_threads, fuse=False).run_nodes(
            feats, graph, rows, tr)
        return tr

    def run_from(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Point-cloud models: run the layers downstream of the given named values (e.g.
        ``{"pooled": g}`` runs the classifier head) and return every value (for tests that
        feed PyTorch's own intermediates to the engine)."""
        if not self.is_point_model:
            raise TypeError("run_from is available for point-cloud models")
        return self._runner.run_from(values)

    def run_layer(self, name: str, *inputs: np.ndarray) -> list[np.ndarray]:
        """Point-cloud models: run the layer ``name`` alone on the given input arrays."""
        layer = next((lay for lay in self.program.layers if lay.name == name), None)
        if layer is None or not self.is_point_model:
            raise KeyError(f"no point-cloud layer named {name!r}")
        return getattr(self._runner, f"_p_{layer.op}")(layer, list(inputs))

    def __repr__(self) -> str:
        head = f"arch={self.arch!r}" + (f", variant={self.variant!r}" if self.variant else "")
        return (f"EngineModel({head}, task={self.task!r}, layers={len(self.program.layers)}, "
                f"classes={self.num_classes}, native={self.native})")

    # ------------------------------------------------------------------ checks

    def _no_graph_args(self, edge_index: Any, nodes: Any) -> None:
        if edge_index is not None or nodes is not None:
            raise TypeError("this is a point-cloud model: call it with the points alone, "
                            "model.predict(points)")

    def _check_points(self, points: Any) -> tuple[np.ndarray, bool]:
        if type(points).__module__.startswith("torch"):
            raise TypeError("points is a torch tensor; pass a numpy array (tensor.numpy())")
        if not isinstance(points, np.ndarray):
            try:
                points = np.asarray(points)
            except Exception as e:  # noqa: BLE001 - ragged lists and the like
                raise TypeError(f"points must be an array of shape (B, N, 3): {e}") from e
        if points.dtype == np.bool_ or not np.issubdtype(points.dtype, np.floating):
            raise TypeError(
                f"points must be a float array (float32 or float64), got dtype {points.dtype}"
            )
        single = points.ndim == 2
        if single:
            points = points[None]
        if points.ndim != 3 or points.shape[-1] != 3:
            raise ValueError(
                f"points must be shaped (B, N, 3) or (N, 3), got "
                f"{points.shape[1:] if single else points.shape}"
            )
        b, n, _ = points.shape
        k = self.program.min_points
        if b == 0:
            raise ValueError("empty batch (B = 0): pass at least one point cloud")
        if n < k:
            raise ValueError(
                f"point clouds have {n} points but the model uses k = {k} "
                f"neighbours; give at least {k} points per cloud"
            )
        if not np.isfinite(points).all():
            raise ValueError(
                "points contain NaN or infinite coordinates; clean or drop those points"
            )
        if points.dtype.itemsize > 4 and np.abs(points).max() > np.finfo(np.float32).max:
            raise ValueError(
                "points have coordinates too large for float32 (infinite after "
                "conversion); normalise the clouds"
            )
        return np.ascontiguousarray(points, dtype=np.float32), single

    # ------------------------------------------------------------------ real inputs

    @property
    def input_points(self) -> int | None:
        """The training point count ``N`` (point-cloud models) when known, else ``None``: the
        model file's record (:attr:`num_points`), or the pretrained model's card."""
        n = self.num_points or self.meta.get("num_points")
        return int(n) if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None

    def _real_input(self, points: Any, normalize: bool) -> Any:
        """Resampling/normalisation of user clouds, kept out of the exact forward pass: see
        :func:`bingnn.data.resample.to_model_input` (numpy only)."""
        from bingnn.data.resample import to_model_input

        return to_model_input(points, num_points=self.input_points,
                              min_points=self.program.min_points, normalize=normalize)

    def _check_nodes(self, x: Any, edge_index: Any, nodes: Any
                     ) -> tuple[Any, Graph, np.ndarray | None, np.ndarray | None]:
        feats = node_features(x, self.in_channels)
        n = feats.num_nodes
        if edge_index is None:
            raise TypeError("this is a node-classification model: call it with the node "
                            "features and the edges, model.predict(x, edge_index)")
        if isinstance(edge_index, Graph):
            graph = edge_index
            if graph.num_nodes != n:
                raise ValueError(f"the graph has {graph.num_nodes} nodes but x has {n} rows")
        else:
            graph = Graph(edge_index, n, native=self.native, num_threads=self.num_threads)
        rows, order = _target_rows(nodes, n)
        return feats, graph, rows, order


def _target_rows(nodes: Any, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(sorted unique rows, positions giving the caller's order)`` for ``nodes``."""
    if nodes is None:
        return None, None
    if type(nodes).__module__.startswith("torch"):
        raise TypeError("nodes is a torch tensor; pass a numpy array (tensor.numpy())")
    nodes = np.asarray(nodes)
    if nodes.dtype == np.bool_:
        if nodes.shape != (n,):
            raise ValueError(f"a boolean nodes mask must have shape ({n},), got {nodes.shape}")
        return np.flatnonzero(nodes).astype(np.int64), None
    if not np.issubdtype(nodes.dtype, np.integer) or nodes.ndim != 1:
        raise TypeError(
            f"nodes must be a 1-D integer array of node ids or a boolean mask, got dtype "
            f"{nodes.dtype} and shape {nodes.shape}"
        )
    if nodes.size and (nodes.min() < 0 or nodes.max() >= n):
        raise ValueError(f"nodes holds ids outside [0, {n})")
    rows, inverse = np.unique(nodes.astype(np.int64), return_inverse=True)
    return rows, inverse.reshape(-1)


def load(
    path: str | os.PathLike, *, num_threads: int | None = None, native: bool = True
) -> EngineModel:
    """Load a ``.bgnn`` model file written by :func:`bingnn.export.export`, or a pretrained
    student by its registered name (``"modelnet10-bf2"``, ``"modelnet10-rf"``; see
    :mod:`bingnn.pretrained`). An existing path wins over a name.

    Raises:
        FileNotFoundError: no such file (nor a registered name), or a registered model whose
            files are not installed.
        ModelFileError: corrupt, truncated, foreign or newer-version file, or a description or
            arrays that do not follow :mod:`bingnn.engine.layers`.
    """
    from bingnn.pretrained import resolve_engine_model

    path, card = resolve_engine_model(path)
    model, arrays = read_model_file(path)
    em = EngineModel(model, arrays, num_threads=num_threads, native=native, source=str(path))
    if card is not None and em.is_point_model and em.input_points is None:
        em.meta["num_points"] = int(card["num_points"])  # the card records the training N
    return em


__all__ += ["ModelFileError"]
