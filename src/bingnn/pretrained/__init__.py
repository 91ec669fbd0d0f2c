"""Pretrained ModelNet10 models shipped with bingnn: the registry, the model cards, the files.

Registered names (:data:`REGISTRY`):

* ``modelnet10-dgcnn``: the float DGCNN teacher (PyTorch only);
* ``modelnet10-bf2``: the fully binary BF2 student, stage 3 (PyTorch and the engine);
* ``modelnet10-rf``: the fully binary RF student, stage 3 (PyTorch and the engine).

Each bundled model is three files in the model folder (:func:`model_dir`; the package's
``bingnn/pretrained/models/`` unless ``$BINGNN_PRETRAINED_DIR`` names another):

* ``<name>.json``: the model card (:mod:`bingnn.pretrained.card`): data, recipe, command,
  accuracy, licence, and the SHA-256 of the two other files;
* ``<name>.safetensors``: the PyTorch state dict (safetensors: plain tensors, no pickle);
* ``<name>.bgnn``: the engine model (students only).

Loading never executes code from these files. A registered name whose files are not installed
gives a one-line :class:`FileNotFoundError` saying so. The files are written by the packaging
command (:mod:`bingnn.pretrained.package`) from a finished training run.

This module is numpy-free and torch-free; ``bingnn.models.pretrained(name)`` (PyTorch) and
``bingnn.engine.load(name)`` (engine) build on it. Example::

    import bingnn.engine, bingnn.models
    bingnn.models.pretrained_info("modelnet10-bf2")["test_accuracy"]
    engine_model = bingnn.engine.load("modelnet10-bf2")
    torch_model = bingnn.models.pretrained("modelnet10-dgcnn")
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from .card import CardError, read_card

__all__ = [
    "PRETRAINED_DIR_ENV",
    "REGISTRY",
    "CardError",
    "available",
    "engine_file",
    "model_dir",
    "pretrained_info",
    "resolve_engine_model",
    "weights_file",
]

PRETRAINED_DIR_ENV = "BINGNN_PRETRAINED_DIR"

#: name -> what it is and what the packaging command checks the run against.
REGISTRY: dict[str, dict[str, Any]] = {
    "modelnet10-dgcnn": {
        "kind": "teacher",
        "arch": "dgcnn",
        "dataset": "modelnet10",
        "description": "float DGCNN teacher on ModelNet10",
    },
    "modelnet10-bf2": {
        "kind": "student",
        "arch": "bindgcnn",
        "variant": "bf2",
        "stage": 3,
        "dataset": "modelnet10",
        "description": "fully binary DGCNN, variant BF2 (Hamming k-NN), stage 3, on ModelNet10",
    },
    "modelnet10-rf": {
        "kind": "student",
        "arch": "bindgcnn",
        "variant": "rf",
        "stage": 3,
        "dataset": "modelnet10",
        "description": "fully binary DGCNN, variant RF (real features), stage 3, on ModelNet10",
    },
}


def model_dir() -> Path:
    """Where bundled models live: ``$BINGNN_PRETRAINED_DIR`` if set, else the package's
    ``bingnn/pretrained/models/``."""
    env = os.environ.get(PRETRAINED_DIR_ENV)
    return Path(env).expanduser() if env else Path(__file__).resolve().parent / "models"


def available() -> list[str]:
    """The registered names whose card is installed (files are checked when loaded)."""
    d = model_dir()
    return [n for n in REGISTRY if (d / f"{n}.json").is_file()]


def _check_name(name: str) -> dict[str, Any]:
    if name not in REGISTRY:
        raise ValueError(
            f"unknown pretrained model {name!r}; registered: {', '.join(REGISTRY)}"
        )
    return REGISTRY[name]


def _missing(name: str, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"pretrained model {name!r} is registered but its {what} is not installed in "
        f"{model_dir()} (this bingnn was built without it); package a trained run with "
        f"'python -m bingnn.pretrained.package', or set {PRETRAINED_DIR_ENV} to a folder "
        "holding it"
    )


def pretrained_info(name: str) -> dict[str, Any]:
    """The model card of a registered model, as a dict (see :mod:`bingnn.pretrained.card`):
    at least ``num_points``, ``class_names``, ``k``, ``test_accuracy`` and
    ``mean_class_accuracy`` (fractions, on the test shapes at ``num_points`` points).

    Raises:
        ValueError: not a registered name, or a card that is not valid.
        FileNotFoundError: the name is registered but its card is not installed.
    """
    _check_name(name)
    path = model_dir() / f"{name}.json"
    if not path.is_file():
        raise _missing(name, "model card")
    card = read_card(path)
    if card["name"] != name:
        raise CardError(f"{path}: the card describes {card['name']!r}, not {name!r}")
    return card


def _model_file(name: str, key: str, what: str) -> Path:
    card = pretrained_info(name)
    entry = card["files"].get(key)
    if entry is None:
        raise _missing(name, what)
    path = model_dir() / entry["name"]
    if not path.is_file():
        raise _missing(name, f"{what} {entry['name']}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != entry["sha256"]:
        raise CardError(
            f"{path}: SHA-256 {digest[:12]}... differs from its card's {entry['sha256'][:12]}...; "
            "the file is corrupt or does not belong to this card, reinstall it"
        )
    return path


def engine_file(name: str) -> Path:
    """The checked ``.bgnn`` file of a registered student.

    Raises:
        ValueError: unknown name, the teacher (no engine model), or a corrupt file.
        FileNotFoundError: registered but not installed.
    """
    if _check_name(name)["kind"] != "student":
        students = [n for n, r in REGISTRY.items() if r["kind"] == "student"]
        raise ValueError(
            f"{name} is a float teacher: the engine runs the binary students "
            f"({', '.join(students)}); load it with bingnn.models.pretrained({name!r})"
        )
    return _model_file(name, "engine", "engine model")


def weights_file(name: str) -> Path:
    """The checked ``.safetensors`` state dict of a registered model."""
    _check_name(name)
    return _model_file(name, "weights", "PyTorch weights")


def resolve_engine_model(path_or_name: str | os.PathLike) -> tuple[Path, dict[str, Any] | None]:
    """An engine model to load: an existing path as given (no card), else a registered
    name's checked file and its card. Anything else: :class:`FileNotFoundError` naming both
    possibilities."""
    p = Path(path_or_name)
    if p.exists() or str(path_or_name) not in REGISTRY:
        if not p.exists():
            raise FileNotFoundError(
                f"model file not found: {p} (nor is it a pretrained model name: "
                f"{', '.join(n for n, r in REGISTRY.items() if r['kind'] == 'student')})"
            )
        return p, None
    name = str(path_or_name)
    return engine_file(name), pretrained_info(name)
