"""One loader for every node dataset the commands know, and per-dataset default recipes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from torch_geometric.data import Data

from bingnn.graphs.names import NODE_DATASETS
from bingnn.graphs.ogb import OGB_NODE, load_ogb
from bingnn.graphs.planetoid import PLANETOID, load_planetoid

__all__ = ["NODE_DATASETS", "NodeDataset", "RECIPES", "load_node_dataset", "recipe"]



@dataclass
class NodeDataset:
    data: Data
    num_classes: int
    multilabel: bool
    metric: str  # "acc", "rocauc" or "ogb"
    evaluator: Any = None


def load_node_dataset(name: str, root: str | os.PathLike, raw_dir: str | None = None,
                      download: bool = False, normalize_features: bool | None = None
                      ) -> NodeDataset:
    """Load ``name`` (``cora``, ``citeseer``, ``pubmed``, ``ogbn-arxiv``, ``ogbn-products``,
    ``ogbn-proteins``). ``normalize_features`` (default: on for Planetoid, off for OGB) divides
    each node's features by their sum, as in Kipf & Welling's GCN setup."""
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


#: Default hyper-parameters per dataset (model, training, distillation); command-line flags
#: override. Full-batch recipes distil with KD over every node (``kd_nodes="all"``, weight
#: 0.9), which measured far better than the paper's KD on the labelled nodes only (0.1) on
#: Planetoid (docs/results.md). ogbn-products keeps the paper's setting: over all nodes each
#: mini-batch epoch would sample 12x more seeds.
RECIPES: dict[str, dict[str, Any]] = {
    "planetoid": {"layers": 2, "hidden": 64, "dropout": 0.5, "input_dropout": 0.5,
                  "lr": 0.01, "weight_decay": 5e-4, "epochs": 200, "mode": "full",
                  "scheduler": "none", "centering": "mean", "eval_mode": "full",
                  "kd_alpha": 0.9, "kd_nodes": "all"},
    "ogbn-arxiv": {"layers": 3, "hidden": 256, "dropout": 0.5, "input_dropout": 0.0,
                   "lr": 0.01, "weight_decay": 0.0, "epochs": 500, "mode": "full",
                   "scheduler": "none", "centering": "batchnorm", "eval_mode": "full",
                   "kd_alpha": 0.9, "kd_nodes": "all"},
    "ogbn-products": {"layers": 3, "hidden": 256, "dropout": 0.5, "input_dropout": 0.0,
                      "lr": 3e-3, "weight_decay": 0.0, "epochs": 20, "mode": "minibatch",
                      "fanouts": [15, 10, 5], "batch_size": 1024, "scheduler": "plateau",
                      "centering": "batchnorm", "eval_mode": "layerwise",
                      "kd_alpha": 0.1, "kd_nodes": "train"},
    "ogbn-proteins": {"layers": 3, "hidden": 256, "dropout": 0.0, "input_dropout": 0.0,
                      "lr": 0.01, "weight_decay": 0.0, "epochs": 1000, "mode": "full",
                      "scheduler": "none", "centering": "batchnorm", "eval_mode": "full",
                      "kd_alpha": 0.9, "kd_nodes": "all"},
}


def recipe(name: str) -> dict[str, Any]:
    key = name.lower()
    return dict(RECIPES["planetoid" if key in PLANETOID else key])
