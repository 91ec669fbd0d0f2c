"""PyTorch ``Dataset`` wrappers over the numpy point-cloud sources.

``get_dataset("synthetic" | "modelnet40", split)`` is the single entry point of the training
side. Items are ``(points, label)``: a float32 tensor ``(N, 3)`` and an int64 scalar tensor,
so the default collate gives ``(B, N, 3)`` and ``(B,)``.

Augmentation randomness is a pure function of ``(seed, epoch, index)``: each item draws from
its own ``np.random.Generator(SeedSequence([seed, epoch, index]))``. The result therefore does
not depend on the number of ``DataLoader`` workers nor on which worker serves which item, and
it changes between epochs once the training loop calls :meth:`PointCloudDataset.set_epoch`
(with persistent workers, call it before the epoch's iterator is created).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import augment_point_cloud, first_points
from .modelnet10 import download_modelnet10, load_modelnet10
from .modelnet40 import default_data_root, download_modelnet40, load_modelnet40
from .synthetic import SYNTHETIC_CLASSES, make_synthetic_shapes

__all__ = ["DATASETS", "PointCloudDataset", "get_dataset"]

DATASETS = ("synthetic", "modelnet40", "modelnet10")
# The HDF5 releases: name -> (download into root, load a split from root).
_RELEASES = {
    "modelnet40": (download_modelnet40, load_modelnet40),
    "modelnet10": (download_modelnet10, load_modelnet10),
}
# Default sizes of the synthetic splits: 200 train / 50 test clouds per class.
_SYNTHETIC_SIZES = {"train": 200 * len(SYNTHETIC_CLASSES), "test": 50 * len(SYNTHETIC_CLASSES)}


class PointCloudDataset(Dataset):
    """Labelled point clouds, optionally augmented (scale, shift, shuffle).

    Args:
        points: ``(M, P, 3)`` float array, ``P >= num_points``.
        labels: ``(M,)`` integer class indices in ``[0, len(class_names))``.
        class_names: one name per class.
        num_points: ``N``, each item keeps the first ``N`` points (before any shuffle).
        augment: apply :func:`~bingnn.data.augment.augment_point_cloud`.
        seed: base seed of the augmentation streams.

    Shapes:
        item: ``(N, 3)`` float32 tensor, ``()`` int64 tensor.
    """

    def __init__(
        self,
        points: np.ndarray,
        labels: np.ndarray,
        class_names: Sequence[str],
        num_points: int = 1024,
        augment: bool = False,
        seed: int = 0,
    ):
        points = np.asarray(points)
        labels = np.asarray(labels)
        if points.ndim != 3 or points.shape[2] != 3:
            raise ValueError(f"points must have shape (M, P, 3), got {points.shape}")
        if labels.shape != (points.shape[0],):
            raise ValueError(
                f"labels must have shape ({points.shape[0]},) to match points, got {labels.shape}"
            )
        if points.shape[0] == 0:
            raise ValueError("the dataset is empty (0 clouds)")
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
        self.class_names = list(class_names)
        if labels.min() < 0 or labels.max() >= len(self.class_names):
            raise ValueError(
                f"labels span [{labels.min()}, {labels.max()}] but there are "
                f"{len(self.class_names)} class names"
            )
        # Validates num_points against P once, here, rather than per item.
        self.points = np.ascontiguousarray(first_points(points, num_points), dtype=np.float32)
        if not np.isfinite(self.points).all():
            raise ValueError("points hold NaN/inf coordinates")
        self.labels = labels.astype(np.int64)
        self.num_points = int(num_points)
        self.augment = bool(augment)
        self.seed = int(seed)
        self.epoch = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (deterministic given ``seed``)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.points.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} clouds")
        index = index % n
        pts = self.points[index]
        if self.augment:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, index]))
            pts = augment_point_cloud(pts, rng)
        return (
            torch.from_numpy(np.array(pts, dtype=np.float32)),
            torch.tensor(self.labels[index], dtype=torch.int64),
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} clouds, {self.num_points} points, "
            f"{self.num_classes} classes, augment={self.augment})"
        )


def get_dataset(
    name: str,
    split: str = "train",
    num_points: int = 1024,
    root: str | os.PathLike | None = None,
    download: bool = False,
    augment: bool | None = None,
    seed: int = 0,
    num_samples: int | None = None,
) -> PointCloudDataset:
    """Build a point-cloud dataset by name.

    Args:
        name: ``"synthetic"`` (generated, no files; see :mod:`bingnn.data.synthetic`) or
            ``"modelnet40"`` / ``"modelnet10"`` (HDF5 layout under ``root``; see
            :mod:`bingnn.data.modelnet40`, :mod:`bingnn.data.modelnet10`).
        split: ``"train"`` or ``"test"``.
        num_points: points per cloud (ModelNet40 keeps the first ``num_points`` of 2,048).
        root: the dataset's folder or its parent; default :func:`default_data_root`.
        download: fetch the dataset first when it is not under ``root`` (ModelNet10: the
            official meshes, sampled into an HDF5 cache).
        augment: default ``True`` for ``"train"``, ``False`` for ``"test"``.
        seed: synthetic generation seed and augmentation seed.
        num_samples: synthetic: clouds to generate (default 200 train / 50 test per class);
            ModelNet40: keep only the first ``num_samples`` clouds (quick runs).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if num_samples is not None and num_samples < 1:
        raise ValueError(f"num_samples must be >= 1 or None, got {num_samples}")
    if augment is None:
        augment = split == "train"
    if name == "synthetic":
        m = num_samples if num_samples is not None else _SYNTHETIC_SIZES[split]
        points, labels = make_synthetic_shapes(m, num_points, seed, split=split)
        names: list[str] = list(SYNTHETIC_CLASSES)
    else:
        root = Path(root).expanduser() if root is not None else default_data_root()
        download_fn, load_fn = _RELEASES[name]
        if download:
            download_fn(root)
        points, labels, names = load_fn(root, split)
        if num_samples is not None:
            points, labels = points[:num_samples], labels[:num_samples]
    return PointCloudDataset(points, labels, names, num_points, augment=augment, seed=seed)
