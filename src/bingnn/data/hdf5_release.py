"""The HDF5 layout of the ModelNet point-cloud releases, shared by ModelNet40 and ModelNet10.

A release folder holds::

    ply_data_train0.h5 ...          # data (M, P, 3) float32, label (M, 1) uint8, name (M,) opt.
    ply_data_test0.h5 ...
    train_files.txt, test_files.txt # the .h5 files of each split, one a line
    shape_names.txt                 # the class names, label order

The split lists name files with a path from the original authors' tree (e.g.
``data/modelnet40_ply_hdf5_2048/ply_data_train0.h5``); only the file name counts, and it is
looked up inside the folder. :func:`write_release` writes this layout atomically (a temporary
folder renamed into place), so a reader never sees half a release.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

__all__ = ["SPLITS", "find_release", "load_release", "write_release"]

SPLITS = ("train", "test")
_LISTS = ("shape_names.txt", "train_files.txt", "test_files.txt")


def find_release(root: str | os.PathLike, folder_name: str, label: str, hint: str) -> Path:
    """The release folder: ``root`` itself if it holds release files, else
    ``root/folder_name``. Checks that both splits are complete.

    Raises:
        FileNotFoundError: the folder or one of its files is missing; says ``hint``.
    """
    root = Path(root).expanduser()
    # ``root`` is the release itself when it holds any of its files (so that a partial copy
    # gets a list of what is missing, not "not found").
    markers = (*_LISTS, "ply_data_*.h5")
    is_release = root.is_dir() and any(next(root.glob(m), None) for m in markers)
    folder = root if is_release else root / folder_name
    if not folder.is_dir():
        raise FileNotFoundError(f"{label} not found: no folder {folder}; {hint}")
    missing = [n for n in _LISTS if not (folder / n).is_file()]
    for split in SPLITS:
        if (folder / f"{split}_files.txt").is_file():
            missing += [f.name for f in split_files(folder, split) if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{label} folder {folder} is incomplete, missing: {', '.join(missing)}; {hint}"
        )
    return folder


def split_files(folder: Path, split: str) -> list[Path]:
    """The ``.h5`` files that ``{split}_files.txt`` lists, inside ``folder``."""
    lines = (folder / f"{split}_files.txt").read_text().splitlines()
    # Entries are paths in someone else's tree; keep the file name only.
    return [
        folder / PurePosixPath(ln.strip().replace("\\", "/")).name for ln in lines if ln.strip()
    ]


def load_release(
    folder: Path, split: str, label: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``points (M, P, 3)`` float32, ``labels (M,)`` int64, ``class_names`` of one split of the
    (already found) release ``folder``, the files concatenated in list order.

    Raises:
        ValueError: unknown split, or a file with wrong datasets, shapes or labels.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    import h5py

    names = [n.strip() for n in (folder / "shape_names.txt").read_text().splitlines() if n.strip()]
    if not names:
        raise ValueError(f"{folder / 'shape_names.txt'} lists no class name")
    files = split_files(folder, split)
    if not files:
        raise ValueError(f"{folder / f'{split}_files.txt'} lists no file")
    pts, lbl = [], []
    for f in files:
        try:
            h = h5py.File(f, "r")
        except OSError as e:
            raise ValueError(f"{f}: not a readable HDF5 file ({e}); re-download it") from e
        with h:
            if not isinstance(h.get("data"), h5py.Dataset) or not isinstance(
                h.get("label"), h5py.Dataset
            ):
                raise ValueError(f"{f}: expected datasets 'data' and 'label', got {list(h)}")
            data, lab = np.asarray(h["data"][()]), np.asarray(h["label"][()])
        if data.ndim != 3 or data.shape[2] != 3 or data.shape[0] == 0:
            raise ValueError(f"{f}: 'data' has shape {data.shape}, expected (M, N, 3), M > 0")
        lab = lab.reshape(-1)
        if lab.shape[0] != data.shape[0]:
            raise ValueError(f"{f}: {data.shape[0]} clouds but {lab.shape[0]} labels")
        if pts and data.shape[1] != pts[0].shape[1]:
            raise ValueError(
                f"{f}: {data.shape[1]} points per cloud, other files have {pts[0].shape[1]}"
            )
        if lab.min() < 0 or lab.max() >= len(names):
            raise ValueError(f"{f}: labels outside [0, {len(names)}) of shape_names.txt")
        pts.append(data.astype(np.float32, copy=False))
        lbl.append(lab.astype(np.int64))
    points = np.concatenate(pts)
    if not np.isfinite(points).all():
        raise ValueError(f"{label} {split} split holds NaN/inf coordinates; re-download it")
    return points, np.concatenate(lbl), names


def write_release(
    folder: str | os.PathLike,
    splits: Mapping[str, tuple[np.ndarray, np.ndarray, Sequence[str]]],
    class_names: Sequence[str],
    tree_name: str,
) -> Path:
    """Write a release atomically: ``splits[split] = (points (M, P, 3), labels (M,), shape
    file names)``, one ``ply_data_{split}0.h5`` each (gzip, chunked per cloud), the split lists
    (entries ``data/{tree_name}/ply_data_{split}0.h5`` as in the official releases) and
    ``shape_names.txt``. An existing ``folder`` is replaced only once the new one is complete.
    """
    import h5py

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        (work / "shape_names.txt").write_text("\n".join(class_names) + "\n")
        for split, (points, labels, names) in splits.items():
            fname = f"ply_data_{split}0.h5"
            points = np.ascontiguousarray(points, dtype=np.float32)
            with h5py.File(work / fname, "w") as f:
                f.create_dataset("data", data=points, compression="gzip",
                                 chunks=(1, *points.shape[1:]) if len(points) else None)
                f.create_dataset("label", data=np.asarray(labels, np.uint8).reshape(-1, 1))
                f.create_dataset("name", data=np.array([n.encode() for n in names], dtype="S"))
            (work / f"{split}_files.txt").write_text(f"data/{tree_name}/{fname}\n")
        os.chmod(work, 0o755)  # mkdtemp makes it private; a dataset is meant to be shared
        backup = None
        if folder.exists():
            backup = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, backup)
        os.replace(work, folder)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder
