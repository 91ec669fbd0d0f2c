"""Convolutions, one per file.

Point-set convolutions (dense ``(B, N, C)`` inputs, each builds its own k-NN graph — PyTorch
Geometric's counterpart is ``DynamicEdgeConv``, not ``EdgeConv``, which takes a graph):
:class:`PointEdgeConv`, :class:`BinPointEdgeConv`, :class:`XorPointEdgeConv`.

Graph convolutions (PyTorch Geometric ``MessagePassing`` layers on an ``edge_index``):
:class:`BinSAGEConv`, :class:`BinGCNConv`. They import PyTorch Geometric, so they are loaded on
first access only: point-cloud users never import it.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from bingnn.nn.conv.bin_point_edge_conv import BinPointEdgeConv
from bingnn.nn.conv.point_edge_conv import PointEdgeConv
from bingnn.nn.conv.xor_point_edge_conv import XorPointEdgeConv

_LAZY = {
    "BinSAGEConv": "bingnn.nn.conv.bin_sage_conv",
    "BinGCNConv": "bingnn.nn.conv.bin_gcn_conv",
}

#: Old names of the point-set convolutions (they read like PyG's graph ``EdgeConv``).
DEPRECATED = {
    "EdgeConv": "PointEdgeConv",
    "BinEdgeConv": "BinPointEdgeConv",
    "XorEdgeConv": "XorPointEdgeConv",
}

__all__ = ["BinGCNConv", "BinPointEdgeConv", "BinSAGEConv", "PointEdgeConv", "XorPointEdgeConv"]


def resolve(name: str, namespace: dict[str, Any], module: str) -> Any:
    """Module ``__getattr__`` body shared by ``bingnn.nn`` and ``bingnn.nn.conv``: lazy graph
    convolutions, and deprecated aliases that warn."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in DEPRECATED:
        new = DEPRECATED[name]
        warnings.warn(
            f"{module}.{name} is deprecated: it is {module}.{new}, a convolution on point sets "
            f"that builds its own k-NN graph (PyTorch Geometric's EdgeConv takes a graph); "
            f"use {new}",
            DeprecationWarning,
            stacklevel=3,
        )
        return namespace[new]
    raise AttributeError(f"module {module!r} has no attribute {name!r}")


def __getattr__(name: str) -> Any:
    return resolve(name, globals(), __name__)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
