"""Model classes by name: :func:`build_model` rebuilds any bingnn model from its
``model.config`` dict (the ``"arch"`` key names the class), as model files and pretrained
cards store it.

The node classifiers need PyTorch Geometric and are imported on first use, so point-cloud
users never load it.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

__all__ = ["NODE_MODELS", "build_model", "model_class"]

#: Class name -> module of the node classifiers (imported lazily).
NODE_MODELS = {
    "GCN": "bingnn.models.gcn",
    "BinGCN": "bingnn.models.gcn",
    "GraphSAGE": "bingnn.models.graphsage",
    "BinSAGE": "bingnn.models.graphsage",
}
_POINT_MODELS = {"DGCNN": "bingnn.models.dgcnn", "BinDGCNN": "bingnn.models.bin_dgcnn"}
_ARCHS: dict[str, str] = {
    "dgcnn": "DGCNN", "bindgcnn": "BinDGCNN", "graphsage": "GraphSAGE", "binsage": "BinSAGE",
    "gcn": "GCN", "bingcn": "BinGCN",
}


def model_class(name: str) -> type[nn.Module]:
    """The model class called ``name`` (``"BinSAGE"``, ``"DGCNN"``, ...)."""
    module = NODE_MODELS.get(name) or _POINT_MODELS.get(name)
    if module is None:
        raise AttributeError(f"bingnn has no model class {name!r}")
    return getattr(importlib.import_module(module), name)


def build_model(config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from its ``model.config`` dict (``"arch"`` names the class)."""
    cfg = dict(config)
    arch = cfg.pop("arch", None)
    if arch not in _ARCHS:
        raise ValueError(f"unknown model arch {arch!r}; choose one of {', '.join(_ARCHS)}")
    cls = model_class(_ARCHS[arch])
    try:
        return cls(**cfg)
    except TypeError as e:
        raise ValueError(f"invalid {arch} configuration: {e}") from e
