"""OGB node property prediction (ogbn-arxiv, ogbn-products, ogbn-proteins) via the ``ogb``
package, scored with its ``Evaluator``.

The graph comes back as one PyG ``Data`` with ``train_idx``/``val_idx``/``test_idx`` and the
task's metric; per dataset:

- ogbn-arxiv: directed citations made undirected (the usual practice), 40 classes, accuracy;
- ogbn-products: 47 classes, accuracy (the graph is already undirected);
- ogbn-proteins: no node features: ``x`` is the mean of the incident edges' 8 features, as in
  the paper; 112 binary tasks (``y`` float, multi-label), mean ROC-AUC.

Offline, the dataset folder must already hold OGB's on-disk layout
(``<root>/<name_with_underscores>/{raw,split,RELEASE_v1.txt}``); ``download=True`` lets
``ogb`` fetch it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Data
from torch_geometric.utils import scatter, to_undirected

from bingnn.graphs.names import OGB_NODE

__all__ = ["OGB_NODE", "OGBNodeData", "load_ogb"]



@dataclass
class OGBNodeData:
    """The graph, its ``Evaluator``, and what the trainer needs to know about the task."""

    data: Data
    evaluator: Any
    num_classes: int  # outputs of the model (tasks for multi-label)
    multilabel: bool
    metric: str  # "acc" or "rocauc"


def _torch_load_compat():
    """``ogb`` calls ``torch.load`` without ``weights_only``; since torch 2.6 that defaults to
    True and refuses PyG's ``Data``. Allow exactly PyG's storage classes, nothing else."""
    from torch_geometric.data.data import Data as _D
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import BaseStorage, EdgeStorage, GlobalStorage, NodeStorage

    allowed = [_D, DataEdgeAttr, DataTensorAttr, GlobalStorage, BaseStorage, NodeStorage,
               EdgeStorage]
    return torch.serialization.safe_globals(allowed)


def load_ogb(name: str, root: str | os.PathLike, download: bool = False) -> OGBNodeData:
    """Load an OGB node property prediction dataset (see module docstring).

    Raises:
        ValueError: unknown name, or the dataset is not on disk and ``download`` is off.
    """
    if name not in OGB_NODE:
        raise ValueError(f"unknown OGB node dataset {name!r}; choose one of {list(OGB_NODE)}")
    from ogb.nodeproppred import Evaluator, PygNodePropPredDataset

    folder = Path(root) / name.replace("-", "_")
    if not download:
        raw = folder / "raw"
        if not (folder / "RELEASE_v1.txt").is_file() or not (raw / "edge.csv.gz").is_file():
            if not (folder / "processed" / "geometric_data_processed.pt").is_file():
                raise ValueError(
                    f"{name} is not in {folder} (need OGB's layout: raw/, split/, "
                    "RELEASE_v1.txt); pass download=True (--download) to fetch it"
                )
    try:
        with _torch_load_compat():
            ds = PygNodePropPredDataset(name, root=str(root))
            split = ds.get_idx_split()
    except (OSError, KeyError, IndexError, RuntimeError, EOFError, ValueError) as e:
        raise ValueError(f"could not read {name} from {folder}: {e}") from e
    g = ds[0]
    data = Data(edge_index=g.edge_index, num_nodes=g.num_nodes)
    if name == "ogbn-arxiv":
        data.edge_index = to_undirected(g.edge_index, num_nodes=g.num_nodes)
    if name == "ogbn-proteins":
        # x_i = mean of the features of the edges incident to i (edges are stored both ways)
        data.x = scatter(g.edge_attr.float(), g.edge_index[1], dim=0, dim_size=g.num_nodes,
                         reduce="mean")
        data.y = g.y.float()
        multilabel, metric, classes = True, "rocauc", int(g.y.size(1))
    else:
        data.x = g.x.float()
        data.y = g.y.view(-1).long()
        multilabel, metric, classes = False, "acc", int(ds.num_classes)
    data.train_idx, data.val_idx, data.test_idx = split["train"], split["valid"], split["test"]
    return OGBNodeData(data, Evaluator(name), classes, multilabel, metric)
