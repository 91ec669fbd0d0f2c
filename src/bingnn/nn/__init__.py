"""Layers of binary GNNs: quantizers, binary linear/blocks, k-NN and convolutions.

Needs PyTorch (``pip install "bingnn[train]"``); the inference engine (``bingnn.engine``) does
not. The graph convolutions ``BinSAGEConv`` and ``BinGCNConv`` are imported on first use (they
need PyTorch Geometric; point-cloud users never load it).

Switches: ``bingnn.nn.debug()`` turns on per-layer input checks (off by default: models check
their input once, at entry); ``bingnn.nn.reference_mode()`` runs the point-cloud layers in
their plain formulation, the reference the fast paths are tested against.
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised by the core-only install test
    raise ImportError(
        'bingnn.nn needs PyTorch, which the core install leaves out: pip install "bingnn[train]"'
    ) from e

from typing import Any

from bingnn._flags import (
    debug,
    is_debug_enabled,
    is_reference_mode,
    reference_mode,
    set_debug,
    set_reference_mode,
)
from bingnn.nn import quantizers
from bingnn.nn.activations import ChannelPReLU
from bingnn.nn.binary_block import BinaryBlock
from bingnn.nn.binary_linear import BinaryLinear
from bingnn.nn.centering import ChannelBatchNorm, MeanCenter, MedianCenter, get_centering
from bingnn.nn.conv import BinPointEdgeConv, PointEdgeConv, XorPointEdgeConv
from bingnn.nn.conv import resolve as _resolve
from bingnn.nn.edge_features import edge_features
from bingnn.nn.knn import gather_neighbors, knn, knn_edge_index, knn_reference, pairwise_distance
from bingnn.nn.rescale import LearnedRescale

__all__ = [
    "BinGCNConv",
    "BinPointEdgeConv",
    "BinSAGEConv",
    "PointEdgeConv",
    "XorPointEdgeConv",
    "quantizers",
    "BinaryBlock",
    "BinaryLinear",
    "ChannelBatchNorm",
    "ChannelPReLU",
    "LearnedRescale",
    "MeanCenter",
    "MedianCenter",
    "debug",
    "edge_features",
    "gather_neighbors",
    "get_centering",
    "is_debug_enabled",
    "is_reference_mode",
    "knn",
    "knn_edge_index",
    "knn_reference",
    "pairwise_distance",
    "reference_mode",
    "set_debug",
    "set_reference_mode",
]


def __getattr__(name: str) -> Any:
    return _resolve(name, globals(), __name__)


def __dir__() -> list[str]:
    return sorted(__all__)
