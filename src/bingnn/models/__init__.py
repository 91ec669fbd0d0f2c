"""Models: float teachers and their binary students.

The node classifiers (``GCN``, ``BinGCN``, ``GraphSAGE``, ``BinSAGE``) need PyTorch Geometric and
are imported on first use, so point-cloud users never load it.
"""

import importlib
from typing import Any

from torch import nn

from bingnn.models.bin_dgcnn import STAGES, VARIANTS, BinDGCNN
from bingnn.models.dgcnn import DGCNN

_NODE_MODELS = {
    "GCN": "bingnn.models.gcn",
    "BinGCN": "bingnn.models.gcn",
    "GraphSAGE": "bingnn.models.graphsage",
    "BinSAGE": "bingnn.models.graphsage",
}
_ARCHS: dict[str, str] = {
    "dgcnn": "DGCNN", "bindgcnn": "BinDGCNN", "graphsage": "GraphSAGE", "binsage": "BinSAGE",
    "gcn": "GCN", "bingcn": "BinGCN",
}


def __getattr__(name: str) -> Any:
    if name in _NODE_MODELS:
        return getattr(importlib.import_module(_NODE_MODELS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_model(config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from its ``model.config`` dict (``"arch"`` names the class)."""
    cfg = dict(config)
    arch = cfg.pop("arch", None)
    if arch not in _ARCHS:
        raise ValueError(f"unknown model arch {arch!r}; choose one of {', '.join(_ARCHS)}")
    cls = globals().get(_ARCHS[arch]) or __getattr__(_ARCHS[arch])
    try:
        return cls(**cfg)
    except TypeError as e:
        raise ValueError(f"invalid {arch} configuration: {e}") from e


def pretrained(name: str) -> nn.Module:
    """A pretrained model shipped with bingnn (``"modelnet10-dgcnn"``, ``"modelnet10-bf2"``,
    ``"modelnet10-rf"``), on the CPU in eval mode. See :mod:`bingnn.pretrained`."""
    from bingnn.pretrained.torch_models import load_pretrained

    return load_pretrained(name)


def pretrained_info(name: str) -> dict[str, Any]:
    """The model card of a pretrained model (``num_points``, ``class_names``,
    ``test_accuracy``, ``mean_class_accuracy``, recipe, command, licence, ...)."""
    from bingnn.pretrained import pretrained_info as info

    return info(name)


__all__ = [
    "BinDGCNN", "BinGCN", "BinSAGE", "DGCNN", "GCN", "GraphSAGE", "STAGES", "VARIANTS",
    "build_model", "pretrained", "pretrained_info",
]
