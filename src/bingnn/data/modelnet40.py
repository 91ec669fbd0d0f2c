"""ModelNet40 in the official ``modelnet40_ply_hdf5_2048`` HDF5 release (numpy + h5py).

Layout of the folder (the unpacked release; see :mod:`bingnn.data.hdf5_release`)::

    modelnet40_ply_hdf5_2048/
        ply_data_train0.h5 ... ply_data_train4.h5   # 9,843 shapes
        ply_data_test0.h5, ply_data_test1.h5        # 2,468 shapes
        train_files.txt, test_files.txt             # the .h5 files of each split, one a line
        shape_names.txt                             # the 40 class names, label order

Each ``.h5`` holds ``data`` ``(M, 2048, 3)`` float32 (centred, inside the unit sphere) and
``label`` ``(M, 1)`` uint8.

The official URL (:data:`DEFAULT_URL`) has been unreliable for years; use a mirror or an already
downloaded zip: ``url=...`` in Python, or the environment variable :data:`URL_ENV` (also read
by the command line), e.g. ``BINGNN_MODELNET40_URL=file:///path/to/modelnet40_ply_hdf5_2048.zip``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .download import download_error, fetch, resolve_url, safe_extract
from .hdf5_release import find_release, load_release

__all__ = [
    "DEFAULT_URL",
    "FOLDER_NAME",
    "URL_ENV",
    "default_data_root",
    "download_modelnet40",
    "find_modelnet40",
    "load_modelnet40",
]

DEFAULT_URL = "https://shapenet.cs.stanford.edu/media/modelnet40_ply_hdf5_2048.zip"
FOLDER_NAME = "modelnet40_ply_hdf5_2048"
#: Environment variable naming a mirror (or a ``file://`` zip) used instead of DEFAULT_URL.
URL_ENV = "BINGNN_MODELNET40_URL"
_HINT = (
    "pass --download (download_modelnet40(root)) to fetch it, or point --data-dir at a "
    f"folder holding the unpacked {FOLDER_NAME} release"
)


def default_data_root() -> Path:
    """``$BINGNN_DATA`` if set, else ``~/.cache/bingnn``."""
    return Path(os.environ.get("BINGNN_DATA", "~/.cache/bingnn")).expanduser()


def find_modelnet40(root: str | os.PathLike) -> Path:
    """The release folder: ``root`` itself if it holds release files, else
    ``root/modelnet40_ply_hdf5_2048``. Checks that both splits are complete.

    Raises:
        FileNotFoundError: the folder or one of its files is missing, with what to do.
    """
    return find_release(root, FOLDER_NAME, "ModelNet40", _HINT)


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
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return load_release(find_modelnet40(root), split, "ModelNet40")


def download_modelnet40(
    root: str | os.PathLike | None = None,
    url: str | None = None,
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
        url: ``http(s)://`` mirror or ``file://`` path of ``modelnet40_ply_hdf5_2048.zip``;
            default ``$BINGNN_MODELNET40_URL``, else :data:`DEFAULT_URL`.
        force: download again even if a complete copy exists.
        keep_zip: keep ``root/modelnet40_ply_hdf5_2048.zip`` after unpacking.
        progress: show a tqdm progress bar.

    Returns:
        The release folder.
    """
    url = resolve_url(url, URL_ENV, DEFAULT_URL)
    root = Path(root).expanduser() if root is not None else default_data_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / FOLDER_NAME
    if not force:
        with contextlib.suppress(FileNotFoundError):
            return find_modelnet40(final)
    zpath = root / f"{FOLDER_NAME}.zip"
    try:
        fetch(url, zpath, progress)
    except OSError as e:  # URLError is an OSError
        raise download_error("ModelNet40", url, URL_ENV, f"{FOLDER_NAME}.zip", e) from e
    work = Path(tempfile.mkdtemp(prefix=".modelnet40-", dir=root))
    try:
        try:
            with zipfile.ZipFile(zpath) as zf:
                safe_extract(zf, work)
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
