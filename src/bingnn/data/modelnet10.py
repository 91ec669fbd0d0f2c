"""ModelNet10 (Wu et al., CVPR 2015): 10 furniture classes of Princeton CAD models, official
split 3,991 train / 908 test shapes.

Two ways in, one layout out (the ModelNet40 HDF5 layout, :mod:`bingnn.data.hdf5_release`):

* **An HDF5 copy** (``load_modelnet10(root)``): a folder with ``ply_data_train0.h5``,
  ``ply_data_test0.h5``, the split lists and ``shape_names.txt``, e.g. a cache written below,
  or any copy laid out like the ModelNet40 release. ``root`` may be that folder or its parent
  (then ``root/modelnet10``).
* **The official release** (``download_modelnet10(root)``): ``ModelNet10.zip`` from Princeton
  (:data:`DEFAULT_URL`; about 450 MB of ``.off`` meshes,
  ``ModelNet10/<class>/<train|test>/<class>_<id>.off``) is downloaded, each mesh is sampled on
  its surface (area-weighted, :func:`bingnn.data.mesh.sample_surface`; by default a 4x denser
  sample thinned by farthest-point sampling, evenly spread like the Poisson-disk samples of
  the HDF5 releases), centred on its mean and scaled into the
  unit sphere (farthest point at radius 1), and the clouds are cached as HDF5 in
  ``root/modelnet10`` (written to a temporary folder, then renamed into place). Shape ``s`` is
  sampled with the seed ``SeedSequence([seed, crc32(s)])``: the cache does not depend on the
  order of the archive nor on which shapes are converted together.

Classes are sorted by name (bathtub, bed, chair, desk, dresser, monitor, night_stand, sofa,
table, toilet) and unbalanced (106 to 889 training shapes): report mean per-class accuracy
beside overall accuracy. Licence: ModelNet is distributed by Princeton for academic research
use.

A mirror or an already downloaded zip: ``url=...`` in Python, or the environment variable
:data:`URL_ENV` (also read by the command line), e.g.
``BINGNN_MODELNET10_URL=file:///path/to/ModelNet10.zip``.
"""

from __future__ import annotations

import contextlib
import os
import re
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from .download import download_error, fetch, local_path, resolve_url
from .formats import PointFileError, read_off
from .hdf5_release import find_release, load_release, write_release
from .mesh import sample_surface
from .modelnet40 import default_data_root
from .resample import normalize_unit_sphere, resample_indices

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_URL",
    "FOLDER_NAME",
    "URL_ENV",
    "build_modelnet10_cache",
    "download_modelnet10",
    "find_modelnet10",
    "load_modelnet10",
]

DEFAULT_URL = "http://3dvision.princeton.edu/projects/2014/3DShapeNets/ModelNet10.zip"
FOLDER_NAME = "modelnet10"
ZIP_NAME = "ModelNet10.zip"
URL_ENV = "BINGNN_MODELNET10_URL"
#: The ten classes of the official release, in label order.
CLASS_NAMES = (
    "bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa", "table",
    "toilet",
)  # fmt: skip
_HINT = (
    "pass --download (download_modelnet10(root)) to build it from the official ModelNet10.zip, "
    "or point --data-dir at a folder holding the ModelNet10 HDF5 files"
)
# <anything>/<class>/<split>/<file>.off; macOS resource forks (__MACOSX/, ._*) are not meshes.
_MEMBER = re.compile(r"(?:^|/)(?P<cls>[^/]+)/(?P<split>train|test)/(?P<file>[^/]+\.off)$", re.I)


def find_modelnet10(root: str | os.PathLike) -> Path:
    """The HDF5 folder: ``root`` itself if it holds release files, else ``root/modelnet10``.

    Raises:
        FileNotFoundError: the folder or one of its files is missing, with what to do.
    """
    return find_release(root, FOLDER_NAME, "ModelNet10", _HINT)


def load_modelnet10(
    root: str | os.PathLike, split: str = "train"
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load one split of ModelNet10 from its HDF5 folder.

    Returns:
        ``points`` ``(M, P, 3)`` float32 (``P`` = 1,024 in the shared copy and the default
        cache), ``labels`` ``(M,)`` int64 in ``[0, 10)``, ``class_names``.

    Raises:
        ValueError: unknown split, or a file with wrong datasets, shapes or labels.
        FileNotFoundError: missing or incomplete folder.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return load_release(find_modelnet10(root), split, "ModelNet10")


def _shape_seed(seed: int, member: str) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), zlib.crc32(member.encode())])


def build_modelnet10_cache(
    zip_path: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    num_points: int = 1024,
    oversample: int = 4,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Sample every mesh of a ModelNet10-style zip and write the HDF5 layout to ``dest``.

    Args:
        zip_path: ``ModelNet10.zip`` (or any zip of ``<class>/<train|test>/<name>.off``).
        dest: the folder to (re)write, atomically.
        num_points: points per shape.
        oversample: draw ``oversample * num_points`` points per mesh and keep ``num_points``
            by farthest-point sampling: evenly spread points, close to the Poisson-disk
            sampling of the HDF5 releases (1 = plain area-weighted sampling).
        seed: base seed of the per-shape samples.
        progress: show a tqdm progress bar.

    Returns:
        ``dest``.

    Raises:
        ValueError: not a zip, no mesh in it, a class missing from one split, or a mesh that
            cannot be read or sampled (named as ``zip:member``).
    """
    from tqdm.auto import tqdm

    zip_path = Path(zip_path)
    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as e:
        raise ValueError(f"{zip_path} is not a valid zip archive ({e})") from None
    with zf:
        members: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
        for info in zf.infolist():
            name = info.filename.replace("\\", "/")
            base = PurePosixPath(name).name
            if info.is_dir() or name.startswith("__MACOSX/") or base.startswith("._"):
                continue
            m = _MEMBER.search(name)
            if m:
                members[m["split"].lower()].append((m["cls"], info.filename))
        classes = sorted({c for split in members.values() for c, _ in split})
        if not classes:
            raise ValueError(
                f"{zip_path} holds no <class>/<train|test>/<name>.off mesh: not ModelNet10"
            )
        for split, items in members.items():
            absent = sorted(set(classes) - {c for c, _ in items})
            if absent:
                raise ValueError(f"{zip_path}: no {split} mesh for class(es) {', '.join(absent)}")
        splits = {}
        total = sum(len(v) for v in members.values())
        with tqdm(total=total, desc="ModelNet10 meshes", disable=not progress) as bar:
            for split, items in members.items():
                items.sort(key=lambda it: (it[0], PurePosixPath(it[1]).name))
                points = np.empty((len(items), num_points, 3), np.float32)
                for i, (_, member) in enumerate(items):
                    points[i] = _sample_member(zf, zip_path, member, num_points, oversample, seed)
                    bar.update()
                labels = np.array([classes.index(c) for c, _ in items], np.int64)
                names = [PurePosixPath(m).name for _, m in items]
                splits[split] = (points, labels, names)
    return write_release(dest, splits, classes, f"modelnet10_hdf5_{num_points}")


def _sample_member(zf: zipfile.ZipFile, zip_path: Path, member: str, num_points: int,
                   oversample: int, seed: int) -> np.ndarray:
    where = f"{zip_path}:{member}"
    g = read_off(where, zf.read(member))
    try:
        if not np.isfinite(g.vertices).all():
            raise ValueError("NaN/inf vertex coordinates")
        if g.is_mesh:
            pts = sample_surface(g.vertices, g.triangles, num_points,
                                 seed=_shape_seed(seed, member), oversample=oversample)
        else:  # no faces: a point set; bring it to num_points like any input cloud
            if len(g.vertices) == 0:
                raise ValueError("no vertex")
            pts = g.vertices[resample_indices(g.vertices, num_points)]
        return normalize_unit_sphere(pts)
    except ValueError as e:
        raise PointFileError(where, str(e)) from None


def download_modelnet10(
    root: str | os.PathLike | None = None,
    url: str | None = None,
    *,
    num_points: int = 1024,
    oversample: int = 4,
    seed: int = 0,
    force: bool = False,
    keep_zip: bool = False,
    progress: bool = True,
) -> Path:
    """Download ``ModelNet10.zip`` and cache its shapes as point clouds in ``root/modelnet10``.

    Nothing is done when a complete cache is already there (unless ``force``). A ``file://``
    URL is read in place; another URL is streamed to ``root/ModelNet10.zip`` (a temporary file
    renamed when complete) and removed after conversion unless ``keep_zip``.

    Args:
        root: parent folder; default :func:`~bingnn.data.modelnet40.default_data_root`.
        url: ``http(s)://`` mirror or ``file://`` path of ``ModelNet10.zip``; default
            ``$BINGNN_MODELNET10_URL``, else :data:`DEFAULT_URL`.
        num_points, oversample, seed: the surface sampling (see
            :func:`build_modelnet10_cache`).
        force: rebuild even if a complete cache exists.
        keep_zip: keep the downloaded zip.
        progress: show progress bars.

    Returns:
        The cache folder.
    """
    url = resolve_url(url, URL_ENV, DEFAULT_URL)
    root = Path(root).expanduser() if root is not None else default_data_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / FOLDER_NAME
    if not force:
        with contextlib.suppress(FileNotFoundError):
            return find_modelnet10(final)
    zpath = local_path(url)
    downloaded = zpath is None
    if zpath is None:
        zpath = root / ZIP_NAME
        try:
            fetch(url, zpath, progress)
        except OSError as e:  # URLError is an OSError
            raise download_error("ModelNet10", url, URL_ENV, ZIP_NAME, e) from e
    elif not zpath.is_file():
        raise download_error(
            "ModelNet10", url, URL_ENV, ZIP_NAME, FileNotFoundError(f"no file {zpath}")
        )
    try:
        return build_modelnet10_cache(
            zpath, final, num_points=num_points, oversample=oversample, seed=seed,
            progress=progress,
        )
    finally:
        if downloaded and not keep_zip:
            with contextlib.suppress(FileNotFoundError):
                zpath.unlink()
