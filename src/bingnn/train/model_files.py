"""Model files and run-folder JSON: what a finished run leaves for ``eval``, ``export`` and the
next distillation stage.

A model file is a checkpoint (:mod:`bingnn.train.checkpoint`: atomic, read with
``weights_only=True``) holding ``model`` (the state dict, on CPU), ``model_config`` (the
``model.config`` dict :func:`bingnn.models.build_model` rebuilds the model from) and whatever
the caller adds (``metrics``, ``config``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bingnn.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bingnn.utils.atomic import atomic_write_text

__all__ = ["cpu_state", "load_model_file", "resolve_device", "save_model_file", "write_json"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    d = str(device).lower()
    if d == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if d.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    try:
        return torch.device(d)
    except RuntimeError as e:
        raise ValueError(f"invalid device {device!r}: choose auto, cpu or cuda[:N]") from e


def cpu_state(model: nn.Module) -> dict[str, Tensor]:
    """The state dict, detached and on the CPU (a copy: later training does not change it)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def save_model_file(
    path: str | os.PathLike,
    model: nn.Module,
    extra: Mapping[str, Any] | None = None,
    state: Mapping[str, Tensor] | None = None,
) -> None:
    """Weights (``state``, default the model's own) + ``model.config`` (+ ``extra``) as a
    checkpoint that ``bingnn eval``/``export`` and the next distillation stage rebuild the
    model from."""
    payload = {
        "model": dict(state) if state is not None else cpu_state(model),
        "model_config": dict(getattr(model, "config", {})),
    }
    payload.update(extra or {})
    save_checkpoint(path, payload)


def load_model_file(
    path: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved by :func:`save_model_file` (or in a ``checkpoint.pt``).

    Returns ``(model, checkpoint dict)``; the model is on ``device`` in eval mode."""
    from bingnn.models import build_model

    ck = load_checkpoint(path)
    if "model" not in ck or "model_config" not in ck or not ck["model_config"]:
        raise CheckpointError(f"{path} holds no model weights with a model config")
    model = build_model(ck["model_config"])
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match the model config ({e})") from e
    return model.to(device).eval(), ck


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Pretty JSON, written atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")
