"""Small graphs and paths to the shared real data sets, for the graph tests."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch_geometric.data import Data


def sbm(n: int = 90, classes: int = 3, feats: int = 8, seed: int = 0) -> Data:
    """Homophilous graph with weakly informative features: neighbours help."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = 0.6 * F.one_hot(y, feats).float() + torch.randn(n, feats, generator=g)
    p = torch.where(y[:, None] == y[None, :], 0.12, 0.01)
    adj = torch.rand(n, n, generator=g) < p
    adj = adj | adj.t()
    adj.fill_diagonal_(False)
    idx = torch.randperm(n, generator=g)
    masks = {k: torch.zeros(n, dtype=torch.bool) for k in ("train", "val", "test")}
    masks["train"][idx[:30]] = True
    masks["val"][idx[30:50]] = True
    masks["test"][idx[50:]] = True
    return Data(x=x, y=y, edge_index=adj.nonzero().t(), train_mask=masks["train"],
                val_mask=masks["val"], test_mask=masks["test"])


def _shared_data() -> Path:
    """``$BINGNN_SHARED_DATA``, else the ``shared/data`` folder beside the checkout (or beside
    the folder of worktrees)."""
    env = os.environ.get("BINGNN_SHARED_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[1]
    for base in (here.parent, here.parent.parent):
        if (base / "shared" / "data").is_dir():
            return base / "shared" / "data"
    return here.parent / "shared" / "data"


SHARED_DATA = _shared_data()
PLANETOID_RAW = SHARED_DATA / "planetoid"
FACEBOOK_RAW = SHARED_DATA / "facebook"
ACTOR_RAW = SHARED_DATA / "actor"
