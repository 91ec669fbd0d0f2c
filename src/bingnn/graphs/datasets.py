"""One loader for every node dataset the commands know.

The training recipes of these data sets are TOML files like the point-cloud ones
(``src/bingnn/distill/recipes/planetoid.toml``, ``ogbn-*.toml``; :mod:`bingnn.distill.recipe`).
Data live under ``root``, by default the data root ``$BINGNN_DATA`` or ``~/.cache/bingnn``
(never the current folder).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from torch_geometric.data import Data

from bingnn.graphs.names import NODE_DATASETS
from bingnn.graphs.ogb import OGB_NODE, load_ogb
from bingnn.graphs.planetoid import PLANETOID, load_planetoid

__all__ = ["NODE_DATASETS", "NodeDataset", "load_node_dataset"]



@dataclass
class NodeDataset:
    data: Data
    num_classes: int
    multilabel: bool
    metric: str  # "acc", "rocauc" or "ogb"
    evaluator: Any = None


def load_node_dataset(name: str, root: str | os.PathLike | None = None,
                      raw_dir: str | None = None, download: bool = False,
                      normalize_features: bool | None = None) -> NodeDataset:
    """Load ``name`` (``cora``, ``citeseer``, ``pubmed``, ``ogbn-arxiv``, ``ogbn-products``,
    ``ogbn-proteins``) from ``root`` (default: the data root, ``$BINGNN_DATA`` or
    ``~/.cache/bingnn``). ``normalize_features`` (default: on for Planetoid, off for OGB) divides
    each node's features by their sum, as in Kipf & Welling's GCN setup."""
    if root is None:
        from bingnn.data.modelnet40 import default_data_root

        root = default_data_root()
    key = name.lower()
    if key in PLANETOID:
        data = load_planetoid(key, root, raw_dir=raw_dir, download=download)
        ds = NodeDataset(data, int(data.y.max()) + 1, False, "acc")
        norm = True if normalize_features is None else normalize_features
    elif key in OGB_NODE:
        o = load_ogb(key, root, download=download)
        ds = NodeDataset(o.data, o.num_classes, o.multilabel, "ogb", o.evaluator)
        norm = bool(normalize_features)
    else:
        raise ValueError(f"unknown node dataset {name!r}; choose one of {list(NODE_DATASETS)}")
    if norm:
        x = ds.data.x
        ds.data.x = x / x.abs().sum(dim=1, keepdim=True).clamp(min=1e-12)
    return ds
