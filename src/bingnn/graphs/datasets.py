"""One loader for every node dataset the commands know.

The training recipes of these data sets are TOML files like the point-cloud ones
(``src/bingnn/distill/recipes/planetoid.toml``, ``facebook.toml``, ``actor.toml``,
``ogbn-*.toml``; :mod:`bingnn.distill.recipe`). Data live under ``root``, by default the data
root ``$BINGNN_DATA`` or ``~/.cache/bingnn`` (never the current folder).

Splits, per data set (:meth:`NodeDataset.for_seed` gives run seed ``s`` its split):

- Planetoid: the public split (20 labels per class, 500 validation, 1,000 test nodes), the
  same for every seed; OGB: the official split, the same for every seed.
- Facebook Page-Page: stratified 60/20/20 split of every class with split seed = run seed
  (:func:`bingnn.graphs.splits.stratified_split`): 13,482 / 4,494 / 4,494 nodes.
- Actor: Geom-GCN's standard split ``s`` for run seed ``s`` (seeds 0-9 only): 3,648 / 2,432 /
  1,520 nodes.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data

from bingnn.graphs.names import GEOM_GCN_NODE, MUSAE_NODE, NODE_DATASETS
from bingnn.graphs.ogb import OGB_NODE, load_ogb
from bingnn.graphs.planetoid import PLANETOID, load_planetoid
from bingnn.models._node import sparse_csr, to_sparse_csr

__all__ = ["NODE_DATASETS", "NORMALIZE_FEATURES", "NodeDataset", "load_node_dataset",
           "row_normalize"]

SplitMasks = tuple[Tensor, Tensor, Tensor]


@dataclass
class NodeDataset:
    """A graph, its task, and (for data sets without one fixed split) the split of each run.

    ``data`` carries the split of run seed 0 (what code that ignores seeds trains on);
    ``split_of_seed`` maps a run seed to its ``(train, val, test)`` boolean masks.
    """

    data: Data
    num_classes: int
    multilabel: bool
    metric: str  # "acc", "rocauc" or "ogb"
    evaluator: Any = None
    split_of_seed: Callable[[int], SplitMasks] | None = None

    def for_seed(self, seed: int) -> Data:
        """The graph with the split run ``seed`` trains and is scored on (module
        docstring); a shallow copy sharing features and edges with ``data``."""
        if self.split_of_seed is None:
            return self.data
        d = copy.copy(self.data)
        d.train_mask, d.val_mask, d.test_mask = self.split_of_seed(seed)
        return d


def row_normalize(x: Tensor) -> Tensor:
    """Divide each row by the sum of its absolute values (rows summing to 0 stay 0); dense or
    sparse CSR in, the same layout out."""
    if x.layout == torch.sparse_csr:
        crow, col, val = x.crow_indices(), x.col_indices(), x.values()
        rows = torch.repeat_interleave(torch.arange(x.size(0)), crow.diff())
        sums = torch.zeros(x.size(0), dtype=val.dtype).index_add_(0, rows, val.abs())
        return sparse_csr(crow, col, val / sums[rows].clamp(min=1e-12), x.shape)
    if x.layout != torch.strided:
        return row_normalize(to_sparse_csr(x))
    return x / x.abs().sum(dim=1, keepdim=True).clamp(min=1e-12)


def _masks(n: int, *index: Tensor) -> SplitMasks:
    out = []
    for idx in index:
        m = torch.zeros(n, dtype=torch.bool)
        m[idx] = True
        out.append(m)
    return tuple(out)  # type: ignore[return-value]


def _load_facebook(root, raw_dir, download) -> NodeDataset:
    from bingnn.graphs.musae import load_musae
    from bingnn.graphs.splits import stratified_split

    data = load_musae("facebook", root, raw_dir=raw_dir, download=download, split_seed=0)
    labels = data.y.numpy()

    def split(seed: int) -> SplitMasks:
        return _masks(data.num_nodes,
                      *(torch.from_numpy(i) for i in stratified_split(labels, seed)))

    return NodeDataset(data, len(data.class_names), False, "acc", split_of_seed=split)


def _load_actor(root, raw_dir, download) -> NodeDataset:
    from bingnn.graphs.actor import actor_split, load_actor

    full = load_actor(root, raw_dir=raw_dir, download=download)
    data = copy.copy(full)
    # binary bag-of-words with ~5 ones in 932 columns: sparse makes the first layer cheap
    data.x = to_sparse_csr(full.x)
    data.train_mask, data.val_mask, data.test_mask = actor_split(full, 0)
    return NodeDataset(data, int(full.y.max()) + 1, False, "acc",
                       split_of_seed=lambda seed: actor_split(full, seed))


def load_node_dataset(name: str, root: str | os.PathLike | None = None,
                      raw_dir: str | None = None, download: bool = False,
                      normalize_features: bool | None = None) -> NodeDataset:
    """Load ``name`` (``cora``, ``citeseer``, ``pubmed``, ``facebook``, ``actor``,
    ``ogbn-arxiv``, ``ogbn-products``, ``ogbn-proteins``) from ``root`` (default: the data
    root, ``$BINGNN_DATA`` or ``~/.cache/bingnn``). ``raw_dir``: folder with the raw release
    files (offline). ``normalize_features`` divides each node's features by their
    sum, as in Kipf & Welling's GCN setup; default: the data set's entry in
    :data:`NORMALIZE_FEATURES`. Facebook and Actor come with sparse CSR features."""
    if root is None:
        from bingnn.data.modelnet40 import default_data_root

        root = default_data_root()
    key = name.lower()
    if key in PLANETOID:
        data = load_planetoid(key, root, raw_dir=raw_dir, download=download)
        ds = NodeDataset(data, int(data.y.max()) + 1, False, "acc")
    elif key in MUSAE_NODE:
        ds = _load_facebook(root, raw_dir, download)
    elif key in GEOM_GCN_NODE:
        ds = _load_actor(root, raw_dir, download)
    elif key in OGB_NODE:
        o = load_ogb(key, root, download=download)
        ds = NodeDataset(o.data, o.num_classes, o.multilabel, "ogb", o.evaluator)
    else:
        raise ValueError(f"unknown node dataset {name!r}; choose one of {list(NODE_DATASETS)}")
    norm = normalize_features
    if norm is None:
        norm = NORMALIZE_FEATURES["planetoid" if key in PLANETOID else key]
    if norm:
        ds.data.x = row_normalize(ds.data.x)
    return ds


#: Row-normalised features by default? (``--normalize-features`` / ``--no-...`` override.)
NORMALIZE_FEATURES: dict[str, bool] = {
    "planetoid": True, "facebook": False, "actor": False,
    "ogbn-arxiv": False, "ogbn-products": False, "ogbn-proteins": False,
}

