"""Models: float teachers and their binary students."""

from typing import Any

from torch import nn

from bingnn.models.bin_dgcnn import STAGES, VARIANTS, BinDGCNN
from bingnn.models.dgcnn import DGCNN
from bingnn.models.gcn import GCN, BinGCN
from bingnn.models.graphsage import BinSAGE, GraphSAGE

_ARCHS: dict[str, type[nn.Module]] = {"dgcnn": DGCNN, "bindgcnn": BinDGCNN}
_ARCHS.update(graphsage=GraphSAGE, binsage=BinSAGE, gcn=GCN, bingcn=BinGCN)


def build_model(config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from its ``model.config`` dict (``"arch"`` names the class)."""
    cfg = dict(config)
    arch = cfg.pop("arch", None)
    if arch not in _ARCHS:
        raise ValueError(f"unknown model arch {arch!r}; choose one of {', '.join(_ARCHS)}")
    try:
        return _ARCHS[arch](**cfg)
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
