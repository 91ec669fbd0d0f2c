"""Export a trained binary GNN to a packed model file (``.bgnn``) for the torch-free engine.

Supported: a stage-3 ``BinDGCNN`` (variants RF, BF1, BF2; point-cloud classification) and a
stage-3 ``BinSAGE`` or ``BinGCN`` (node classification).

Example::

    from bingnn.export import export
    export(model, "model.bgnn", class_names=["chair", "table"], num_points=1024)  # BinDGCNN
    export(node_model, "sage.bgnn")                                                # BinSAGE

    import bingnn.engine
    bingnn.engine.load("model.bgnn").predict(points)                # numpy only
    bingnn.engine.load("sage.bgnn").predict(x, edge_index)

The file format is described in :mod:`bingnn.engine.format` and :mod:`bingnn.engine.layers`;
the folding (BatchNorm, rescale and PReLU turned into exact per-channel threshold predicates)
in :mod:`bingnn.export.fold` and :mod:`bingnn.export.fold_node`.
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


def fold(model: nn.Module, class_names: Sequence[str] | None = None,
         num_points: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(description, arrays)`` of the model file for ``model``, without writing it.

    ``num_points`` (point-cloud models) records the number of points per cloud the model was
    trained on; node models take none."""
    from bingnn.models import BinDGCNN, BinGCN, BinSAGE

    if isinstance(model, BinDGCNN):
        desc, arrays = fold_bindgcnn(model, class_names, num_points)
    elif isinstance(model, (BinSAGE, BinGCN)):
        if num_points is not None:
            raise ExportError("num_points applies to point-cloud models only")
        from bingnn.export.fold_node import fold_node_model

        desc, arrays = fold_node_model(model, class_names)
    else:
        raise ExportError(f"the engine runs BinDGCNN, BinSAGE and BinGCN models, got "
                          f"{type(model).__name__}")
    # Check the result against the reader's expectations before anything is written.
    EngineModel(desc, arrays, source="export")
    return desc, arrays


def _exists_message(dest: Path) -> str:
    return f"{dest} exists; choose another name or allow overwriting it (--force)"


def export(model: nn.Module, path: str | os.PathLike,
           class_names: Sequence[str] | None = None, num_points: int | None = None,
           overwrite: bool = True) -> Path:
    """Fold and pack a trained stage-3 ``BinDGCNN`` (variant ``rf``, ``bf1`` or ``bf2``),
    ``BinSAGE`` or ``BinGCN`` into one model file at ``path`` (written atomically). Returns the
    path.

    ``overwrite=False`` refuses an existing ``path``, also one that appears while the model is
    folded (the finished file is linked into place only if the name is still free).

    Raises:
        ExportError: the model is not supported by the engine (other architecture or variant,
            stage < 3, balance functions, per-point/per-neighbour rescaling, real-valued last
            layer, ...), or ``path`` is a directory, or it exists and ``overwrite`` is False.
    """
    dest = Path(path)
    if dest.is_dir():
        raise ExportError(f"{dest} is a directory; give the model file's name, e.g. "
                          f"{dest / 'model.bgnn'}")
    if not overwrite and os.path.lexists(dest):
        raise ExportError(_exists_message(dest))
    desc, arrays = fold(model, class_names, num_points)
    try:
        write_model_file(dest, desc, arrays, overwrite=overwrite)
    except FileExistsError:
        if not os.path.lexists(dest):  # e.g. a file where a parent folder is needed
            raise
        raise ExportError(_exists_message(dest)) from None
    return dest


def _config(ck: dict[str, Any]) -> dict[str, Any]:
    cfg = ck.get("config") or {}
    return cfg if isinstance(cfg, dict) else {}


def _class_names_from(ck: dict[str, Any], num_classes: int) -> list[str] | None:
    cfg = _config(ck)
    data = cfg.get("data")
    dataset = str((data if isinstance(data, dict) else cfg).get("dataset", "")).lower()
    if dataset == "synthetic":
        from bingnn.data.synthetic import SYNTHETIC_CLASSES

        if len(SYNTHETIC_CLASSES) == num_classes:
            return list(SYNTHETIC_CLASSES)
    return None


def _num_points_from(ck: dict[str, Any]) -> int | None:
    """The training point count recorded by the trainer (``config.data.num_points``)."""
    cfg = _config(ck)
    data = cfg.get("data")
    n = (data if isinstance(data, dict) else cfg).get("num_points")
    return int(n) if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def export_checkpoint(checkpoint: str | os.PathLike, path: str | os.PathLike,
                      class_names: Sequence[str] | None = None,
                      num_points: int | None = None, overwrite: bool = True) -> Path:
    """Export the model stored in a training checkpoint (``best.pt``, ``final.pt``,
    ``checkpoint.pt``) to ``path`` (see :func:`export`). Class names default to the dataset's
    when known; the training point count of a point-cloud model to the one the checkpoint
    records. The checkpoint itself is never overwritten."""
    from bingnn.models import BinDGCNN
    from bingnn.train.model_files import load_model_file

    dest = Path(path)
    if os.path.exists(dest) and os.path.exists(checkpoint) and os.path.samefile(checkpoint, dest):
        raise ExportError(f"the output {dest} is the input checkpoint; writing it would destroy "
                          f"the checkpoint: choose another name, e.g. {dest.with_suffix('.bgnn')}")
    model, ck = load_model_file(checkpoint)
    if class_names is None:
        class_names = _class_names_from(ck, int(getattr(model, "config", {}).get(
            "num_classes", 0)))
    if num_points is None and isinstance(model, BinDGCNN):
        num_points = _num_points_from(ck)
    return export(model, dest, class_names, num_points, overwrite=overwrite)
