"""Export a trained binary DGCNN to a packed model file (``.bgnn``) for the torch-free engine.

Example::

    from bingnn.export import export
    export(model, "model.bgnn", class_names=["chair", "table"])    # a stage-3 BinDGCNN

    import bingnn.engine
    bingnn.engine.load("model.bgnn").predict(points)                # numpy only

The file format is described in :mod:`bingnn.engine.format`; the folding (BatchNorm, rescale
and PReLU turned into exact per-channel threshold predicates) in :mod:`bingnn.export.fold`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from bingnn.engine.format import write_model_file
from bingnn.engine.model import EngineModel
from bingnn.export.fold import ExportError, fold_bindgcnn

__all__ = ["ExportError", "export", "export_checkpoint", "fold"]


def fold(model: nn.Module, class_names: Sequence[str] | None = None
         ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(description, arrays)`` of the model file for ``model``, without writing it."""
    desc, arrays = fold_bindgcnn(model, class_names)  # type: ignore[arg-type]
    # Check the result against the reader's expectations before anything is written.
    EngineModel(desc, arrays, source="export")
    return desc, arrays


def export(model: nn.Module, path: str | os.PathLike,
           class_names: Sequence[str] | None = None) -> Path:
    """Fold and pack a trained stage-3 ``BinDGCNN`` (variant ``rf``, ``bf1`` or ``bf2``) into
    one model file at ``path`` (written atomically). Returns the path.

    Raises:
        ExportError: the model is not supported by the engine (other variant, stage < 3,
            balance functions, per-point/per-neighbour rescaling, binary last layer).
    """
    desc, arrays = fold(model, class_names)
    write_model_file(path, desc, arrays)
    return Path(path)


def _class_names_from(ck: dict[str, Any], num_classes: int) -> list[str] | None:
    cfg = ck.get("config") or {}
    data = cfg.get("data") if isinstance(cfg, dict) else None
    dataset = str((data or cfg).get("dataset", "")).lower() if isinstance(cfg, dict) else ""
    if dataset == "synthetic":
        from bingnn.data.synthetic import SYNTHETIC_CLASSES

        if len(SYNTHETIC_CLASSES) == num_classes:
            return list(SYNTHETIC_CLASSES)
    return None


def export_checkpoint(checkpoint: str | os.PathLike, path: str | os.PathLike,
                      class_names: Sequence[str] | None = None) -> Path:
    """Export the model stored in a training checkpoint (``best.pt``, ``final.pt``,
    ``checkpoint.pt``) to ``path``. Class names default to the dataset's when known."""
    from bingnn.train.model_files import load_model_file

    model, ck = load_model_file(checkpoint)
    if class_names is None:
        class_names = _class_names_from(ck, int(getattr(model, "config", {}).get(
            "num_classes", 0)))
    return export(model, path, class_names)
