"""PyTorch ``Dataset`` wrappers over the numpy point-cloud sources.

``get_dataset("synthetic" | "modelnet40", "train" | "val" | "test")`` is the single entry
point of the training side; ``"val"`` is a seeded, stratified 10% of the official training
set (:mod:`bingnn.data.splits`), ``"train"`` the rest. Items are ``(points, label)``: a
float32 tensor ``(N, 3)`` and an int64 scalar tensor, so the default collate gives
``(B, N, 3)`` and ``(B,)``.

Augmentation randomness is a pure function of ``(seed, epoch, index)``: each item draws from
its own ``np.random.Generator(SeedSequence([seed, epoch, index]))``. The result therefore does
not depend on the number of ``DataLoader`` workers nor on which worker serves which item, and
it changes between epochs once the training loop calls :meth:`PointCloudDataset.set_epoch`
(with persistent workers, call it before the epoch's iterator is created).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import augment_point_cloud, first_points
from .modelnet10 import download_modelnet10, load_modelnet10
from .modelnet40 import default_data_root, download_modelnet40, load_modelnet40
from .splits import stratified_split, stratified_subset
from .synthetic import SYNTHETIC_CLASSES, make_synthetic_shapes

__all__ = ["DATASETS", "SPLITS", "PointCloudDataset", "get_dataset", "register_dataset"]

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


#: ``loader(split, *, root, download, seed, num_samples, num_points) -> (points, labels,
#: class_names)`` for ``split`` in ``("train", "test")`` (the official splits); ``points`` is
#: ``(M, P, 3)`` with ``P >= num_points``. A loader may return exactly ``num_samples`` clouds
#: (generated data) or the whole split, which :func:`get_dataset` then subsets (stratified).
#: Register a new source with :func:`register_dataset`.
DatasetLoader = Callable[..., tuple[np.ndarray, np.ndarray, list[str]]]


def _load_synthetic(split, *, root, download, seed, num_samples, num_points):
    m = num_samples if num_samples is not None else _SYNTHETIC_SIZES[split]
    points, labels = make_synthetic_shapes(m, num_points, seed, split=split)
    return points, labels, list(SYNTHETIC_CLASSES)


def _hdf5_release(download_fn: Callable, load_fn: Callable) -> DatasetLoader:
    """The loader of an HDF5 release (ModelNet40's layout) under ``root``."""

    def load(split, *, root, download, seed, num_samples, num_points):
        root = Path(root).expanduser() if root is not None else default_data_root()
        if download:
            download_fn(root)
        return load_fn(root, split)

    return load


_LOADERS: dict[str, DatasetLoader] = {
    "synthetic": _load_synthetic,
    "modelnet40": _hdf5_release(download_modelnet40, load_modelnet40),
    "modelnet10": _hdf5_release(download_modelnet10, load_modelnet10),
}
DATASETS: tuple[str, ...] = tuple(_LOADERS)
SPLITS = ("train", "val", "test")
#: Share of the official training set held out for validation (model selection).
VAL_FRACTION = 0.1


def register_dataset(name: str, loader: DatasetLoader) -> None:
    """Make ``get_dataset(name, ...)`` read clouds through ``loader`` (see
    :data:`DatasetLoader`)."""
    global DATASETS
    _LOADERS[str(name)] = loader
    DATASETS = tuple(_LOADERS)


def get_dataset(
    name: str,
    split: str = "train",
    num_points: int = 1024,
    root: str | os.PathLike | None = None,
    download: bool = False,
    augment: bool | None = None,
    seed: int = 0,
    num_samples: int | None = None,
    val_fraction: float = VAL_FRACTION,
    split_seed: int = 0,
) -> PointCloudDataset:
    """Build a point-cloud dataset by name.

    ``"train"`` and ``"val"`` partition the official training set: a seeded, stratified
    ``val_fraction`` (10%) of it is held out for validation, i.e. for choosing epochs and
    hyper-parameters; ``"test"`` is the official test set, for the final report only.

    Args:
        name: ``"synthetic"`` (generated, no files; see :mod:`bingnn.data.synthetic`) or
            ``"modelnet40"`` / ``"modelnet10"`` (HDF5 layout under ``root``; see
            :mod:`bingnn.data.modelnet40`, :mod:`bingnn.data.modelnet10`).
        split: ``"train"``, ``"val"`` or ``"test"``.
        num_points: points per cloud (ModelNet40 keeps the first ``num_points`` of 2,048).
        root: the dataset's folder or its parent; default :func:`default_data_root`.
        download: fetch the dataset first when it is not under ``root`` (ModelNet10: the
            official meshes, sampled into an HDF5 cache).
        augment: default ``True`` for ``"train"``, ``False`` otherwise.
        seed: synthetic generation seed and augmentation seed.
        num_samples: use ``num_samples`` clouds of the official split (``"train"`` and
            ``"val"``: of the training set, before the validation carve; ``"test"``: of the
            test set): a seeded, stratified subset (synthetic: that many are generated,
            default 200 train / 50 test per class).
        val_fraction: held-out share of the training set, in ``[0, 1)``.
        split_seed: seed of the subsets and of the validation carve (not of the run), so
            runs with different seeds are selected on the same validation clouds.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if num_samples is not None and (isinstance(num_samples, bool) or num_samples < 1):
        raise ValueError(f"num_samples must be >= 1 or None, got {num_samples}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if augment is None:
        augment = split == "train"
    official = "test" if split == "test" else "train"
    points, labels, names = _LOADERS[name](
        official, root=root, download=download, seed=seed, num_samples=num_samples,
        num_points=num_points,
    )
    labels = np.asarray(labels).reshape(-1)
    if num_samples is not None:
        if num_samples > len(labels):
            raise ValueError(
                f"{name} has {len(labels)} {official} clouds; cannot take num_samples = "
                f"{num_samples}"
            )
        keep = stratified_subset(labels, num_samples, split_seed)
        points, labels = points[keep], labels[keep]
    if split != "test":
        kept, held = stratified_split(labels, val_fraction, split_seed)
        part = held if split == "val" else kept
        if part.size == 0:
            raise ValueError(
                f"the {split} split of {name} is empty ({len(labels)} training clouds, "
                f"val_fraction {val_fraction}); use more training samples"
            )
        points, labels = points[part], labels[part]
    return PointCloudDataset(points, labels, names, num_points, augment=augment, seed=seed)
