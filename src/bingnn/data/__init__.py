"""Point-cloud data: file readers, mesh sampling, resampling to a model's input, the synthetic
default dataset, ModelNet40 and ModelNet10, augmentations, metrics, and PyTorch dataset wrappers.

Everything here is numpy-only except :mod:`bingnn.data.datasets` (PyTorch ``Dataset``s), which
is imported lazily on first use of its names, so the torch-free engine can do::

    from bingnn.data.point_files import read_point_clouds

Training code::

    from bingnn.data import get_dataset, overall_accuracy, mean_class_accuracy
    train = get_dataset("synthetic", "train", num_points=1024)  # or "modelnet40", "modelnet10"
    val = get_dataset("synthetic", "val", num_points=1024)      # 10% of the training set
"""

from __future__ import annotations

import importlib
from typing import Any

from .augment import (
    augment_point_cloud,
    first_points,
    random_scale,
    random_shift,
    scale_and_shift,
    shuffle_points,
)
from .mesh import sample_surface
from .metrics import confusion_matrix, mean_class_accuracy, overall_accuracy
from .modelnet10 import download_modelnet10, load_modelnet10
from .modelnet40 import DEFAULT_URL, download_modelnet40, load_modelnet40
from .point_files import PointFileError, read_geometry, read_point_clouds
from .resample import farthest_point_sampling, normalize_unit_sphere, prepare_clouds
from .splits import stratified_split, stratified_subset
from .synthetic import SYNTHETIC_CLASSES, make_synthetic_shapes

_LAZY = {
    name: "datasets"
    for name in ("PointCloudDataset", "get_dataset", "register_dataset", "DATASETS", "SPLITS")
}

__all__ = [
    "DATASETS",
    "DEFAULT_URL",
    "SPLITS",
    "SYNTHETIC_CLASSES",
    "PointCloudDataset",
    "PointFileError",
    "augment_point_cloud",
    "confusion_matrix",
    "download_modelnet10",
    "download_modelnet40",
    "farthest_point_sampling",
    "first_points",
    "get_dataset",
    "load_modelnet10",
    "load_modelnet40",
    "make_synthetic_shapes",
    "mean_class_accuracy",
    "normalize_unit_sphere",
    "overall_accuracy",
    "prepare_clouds",
    "random_scale",
    "random_shift",
    "read_geometry",
    "read_point_clouds",
    "register_dataset",
    "sample_surface",
    "scale_and_shift",
    "shuffle_points",
    "stratified_split",
    "stratified_subset",
]


def __getattr__(name: str) -> Any:
    # PEP 562: the torch-based wrappers load on first access, keeping `import bingnn.data`
    # torch-free.
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
