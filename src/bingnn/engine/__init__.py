"""bingnn inference engine: packed-bit kernels over the native extension, numpy only.

This package never imports PyTorch (nor the training side of bingnn), so a deployed model runs
with numpy and ``bingnn._native`` alone. A model file (``.bgnn``) describes its model as a list
of typed layers (:mod:`bingnn.engine.layers`); the kernels live in
:mod:`bingnn.engine.kernels` and the ``csrc/graph_*`` files; the bit layout they share is in
``docs/bit_layout.md``.

Example::

    import bingnn.engine
    model = bingnn.engine.load("model.bgnn")      # written by `bingnn export`
    labels = model.predict(points)                # a BinDGCNN: points (B, N, 3) or (N, 3)
    labels = model.predict(x, edge_index)         # a BinSAGE / BinGCN: x (N, F), edges (2, E)
    scores = model.logits(x, edge_index, nodes=[0, 5, 7])
"""

from bingnn.engine.format import (
    FORMAT_VERSION,
    LegacyFormatWarning,
    ModelFileError,
    read_model_file,
)
from bingnn.engine.graph import Graph
from bingnn.engine.model import EngineModel, load

__all__ = [
    "FORMAT_VERSION",
    "EngineModel",
    "Graph",
    "LegacyFormatWarning",
    "ModelFileError",
    "load",
    "read_model_file",
]
