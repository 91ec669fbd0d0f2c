"""Models: float teachers and their binary students.

The node classifiers (``GCN``, ``BinGCN``, ``GraphSAGE``, ``BinSAGE``) need PyTorch Geometric and
are imported on first use, so point-cloud users never load it.
"""

from typing import Any

from torch import nn

from bingnn.models.bin_dgcnn import STAGES, VARIANTS, BinDGCNN
from bingnn.models.dgcnn import DGCNN
from bingnn.models.registry import NODE_MODELS, build_model, model_class


def __getattr__(name: str) -> Any:
    if name in NODE_MODELS:
        return model_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
