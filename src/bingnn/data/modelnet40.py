"""ModelNet40 in the official ``modelnet40_ply_hdf5_2048`` HDF5 release (numpy + h5py).

Layout of the folder (the unpacked release)::

    modelnet40_ply_hdf5_2048/
        ply_data_train0.h5 ... ply_data_train4.h5   # 9,843 shapes
        ply_data_test0.h5, ply_data_test1.h5        # 2,468 shapes
        train_files.txt, test_files.txt             # the .h5 files of each split, one a line
        shape_names.txt                             # the 40 class names, label order

Each ``.h5`` holds ``data`` ``(M, 2048, 3)`` float32 (centred, inside the unit sphere) and
``label`` ``(M, 1)`` uint8. The split lists name files with a path from the original authors'
tree (e.g. ``data/modelnet40_ply_hdf5_2048/ply_data_train0.h5``); only the file name counts,
and it is looked up inside the folder.

The official URL (:data:`DEFAULT_URL`) has been unreliable for years; pass a mirror with
``url=...`` or an already downloaded zip as ``file:///path/to/modelnet40_ply_hdf5_2048.zip``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from bingnn.utils.atomic import atomic_open

__all__ = [
    "DEFAULT_URL",
    "FOLDER_NAME",
    "default_data_root",
    "download_modelnet40",
    "find_modelnet40",
    "load_modelnet40",
]

DEFAULT_URL = "https://shapenet.cs.stanford.edu/media/modelnet40_ply_hdf5_2048.zip"
FOLDER_NAME = "modelnet40_ply_hdf5_2048"
_SPLITS = ("train", "test")


def default_data_root() -> Path:
    """``$BINGNN_DATA`` if set, else ``~/.cache/bingnn``."""
    return Path(os.environ.get("BINGNN_DATA", "~/.cache/bingnn")).expanduser()


def find_modelnet40(root: str | os.PathLike) -> Path:
    """The release folder: ``root`` itself if it holds release files, else
    ``root/modelnet40_ply_hdf5_2048``. Checks that both splits are complete.

    Raises:
        FileNotFoundError: the folder or one of its files is missing, with what to do.
    """
    root = Path(root).expanduser()
    # ``root`` is the release itself when it holds any of its files (so that a partial copy
    # gets a list of what is missing, not "not found").
    markers = ("shape_names.txt", "train_files.txt", "test_files.txt", "ply_data_*.h5")
    is_release = root.is_dir() and any(next(root.glob(m), None) for m in markers)
    folder = root if is_release else root / FOLDER_NAME
    hint = (
        "pass --download (download_modelnet40(root)) to fetch it, or point --data-dir at a "
        f"folder holding the unpacked {FOLDER_NAME} release"
    )
    if not folder.is_dir():
        raise FileNotFoundError(f"ModelNet40 not found: no folder {folder}; {hint}")
    missing = [
        n
        for n in ("shape_names.txt", "train_files.txt", "test_files.txt")
        if not (folder / n).is_file()
    ]
    for split in _SPLITS:
        if (folder / f"{split}_files.txt").is_file():
            missing += [f.name for f in _split_files(folder, split) if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"ModelNet40 folder {folder} is incomplete, missing: {', '.join(missing)}; {hint}"
        )
    return folder


def _split_files(folder: Path, split: str) -> list[Path]:
    lines = (folder / f"{split}_files.txt").read_text().splitlines()
    # Entries are paths in someone else's tree; keep the file name only.
    return [
        folder / PurePosixPath(ln.strip().replace("\\", "/")).name for ln in lines if ln.strip()
    ]


def load_modelnet40(
    root: str | os.PathLike, split: str = "train"
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load one split of ModelNet40.

    Args:
        root: the release folder or its parent.
        split: ``"train"`` or ``"test"``.

    Returns:
        ``points`` ``(M, 2048, 3)`` float32, ``labels`` ``(M,)`` int64 in ``[0, 40)``,
        ``class_names`` (40 names, index = label), the files concatenated in list order.

    Raises:
        ValueError: unknown split, or a file with wrong datasets, shapes or labels.
        FileNotFoundError: missing or incomplete folder (see :func:`find_modelnet40`).
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    import h5py

    folder = find_modelnet40(root)
    names = [n.strip() for n in (folder / "shape_names.txt").read_text().splitlines() if n.strip()]
    if not names:
        raise ValueError(f"{folder / 'shape_names.txt'} lists no class name")
    files = _split_files(folder, split)
    if not files:
        raise ValueError(f"{folder / f'{split}_files.txt'} lists no file")
    pts, lbl = [], []
    for f in files:
        try:
            h = h5py.File(f, "r")
        except OSError as e:
            raise ValueError(f"{f}: not a readable HDF5 file ({e}); re-download it") from e
        with h:
            if "data" not in h or "label" not in h:
                raise ValueError(f"{f}: expected datasets 'data' and 'label', got {list(h)}")
            data, label = np.asarray(h["data"][()]), np.asarray(h["label"][()])
        if data.ndim != 3 or data.shape[2] != 3 or data.shape[0] == 0:
            raise ValueError(f"{f}: 'data' has shape {data.shape}, expected (M, N, 3), M > 0")
        label = label.reshape(-1)
        if label.shape[0] != data.shape[0]:
            raise ValueError(f"{f}: {data.shape[0]} clouds but {label.shape[0]} labels")
        if pts and data.shape[1] != pts[0].shape[1]:
            raise ValueError(
                f"{f}: {data.shape[1]} points per cloud, other files have {pts[0].shape[1]}"
            )
        if label.min() < 0 or label.max() >= len(names):
            raise ValueError(f"{f}: labels outside [0, {len(names)}) of shape_names.txt")
        pts.append(data.astype(np.float32, copy=False))
        lbl.append(label.astype(np.int64))
    points = np.concatenate(pts)
    if not np.isfinite(points).all():
        raise ValueError(f"ModelNet40 {split} split holds NaN/inf coordinates; re-download it")
    return points, np.concatenate(lbl), names


def _fetch(url: str, dest: Path, progress: bool) -> None:
    """Stream ``url`` to a temporary file beside ``dest``, then rename it (atomic)."""
    from tqdm.auto import tqdm

    with atomic_open(dest, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
        total = resp.headers.get("Content-Length")
        with tqdm(
            total=int(total) if total else None,
            unit="B",
            unit_scale=True,
            desc=dest.name,
            disable=not progress,
        ) as bar:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))


def _safe_extract(zf: zipfile.ZipFile, dest: Path) -> None:
    """Extract, refusing members that would land outside ``dest`` (``..``, absolute paths,
    drive letters) and symbolic links."""
    base = dest.resolve()
    for info in zf.infolist():
        name = info.filename.replace("\\", "/")
        target = (base / name).resolve()
        mode = info.external_attr >> 16
        if (
            name.startswith("/")
            or ":" in name.split("/")[0]
            or (target != base and base not in target.parents)
        ):
            raise ValueError(f"refusing to extract {info.filename!r}: path leaves {dest}")
        if (mode & 0o170000) == 0o120000:
            raise ValueError(f"refusing to extract {info.filename!r}: symbolic link")
    zf.extractall(base)


def download_modelnet40(
    root: str | os.PathLike | None = None,
    url: str = DEFAULT_URL,
    *,
    force: bool = False,
    keep_zip: bool = False,
    progress: bool = True,
) -> Path:
    """Download and unpack the ModelNet40 HDF5 release into ``root/modelnet40_ply_hdf5_2048``.

    Nothing is downloaded when a complete folder is already there (unless ``force``). The zip
    goes to a temporary file then is renamed; it is unpacked into a temporary folder (members
    that would escape it are refused) which is renamed into place, so an interrupted run never
    leaves a half-written dataset behind.

    Args:
        root: parent folder; default :func:`default_data_root`.
        url: ``http(s)://`` mirror or ``file://`` path of ``modelnet40_ply_hdf5_2048.zip``.
        force: download again even if a complete copy exists.
        keep_zip: keep ``root/modelnet40_ply_hdf5_2048.zip`` after unpacking.
        progress: show a tqdm progress bar.

    Returns:
        The release folder.
    """
    root = Path(root).expanduser() if root is not None else default_data_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / FOLDER_NAME
    if not force:
        with contextlib.suppress(FileNotFoundError):
            return find_modelnet40(final)
    zpath = root / f"{FOLDER_NAME}.zip"
    try:
        _fetch(url, zpath, progress)
    except OSError as e:  # URLError is an OSError
        raise OSError(
            f"could not download ModelNet40 from {url} ({e}); pass url= a mirror, or download "
            f"{FOLDER_NAME}.zip yourself and pass url='file:///path/to/{FOLDER_NAME}.zip'"
        ) from e
    work = Path(tempfile.mkdtemp(prefix=".modelnet40-", dir=root))
    try:
        try:
            with zipfile.ZipFile(zpath) as zf:
                _safe_extract(zf, work)
        except zipfile.BadZipFile as e:
            raise ValueError(f"{url} is not a valid zip archive ({e})") from e
        found = sorted(p.parent for p in work.rglob("shape_names.txt"))
        if not found:
            raise ValueError(f"the archive from {url} holds no shape_names.txt: not ModelNet40")
        find_modelnet40(found[0])  # complete before it replaces anything
        if final.exists():
            shutil.rmtree(final)
        os.replace(found[0], final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not keep_zip:
            with contextlib.suppress(FileNotFoundError):
                zpath.unlink()
    return final
