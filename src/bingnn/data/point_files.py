"""Read point clouds from files with numpy only (no PyTorch), for training and the engine alike.

:func:`read_point_clouds` returns a list of clouds, each a C-contiguous ``float32`` array
``(N, 3)`` (x, y, z), finite and non-empty. The format comes from the file's extension:

=====================  ==========================================================================
``.off``, ``.obj``     meshes: points sampled on the surface (area-weighted, seeded; see
                       :mod:`bingnn.data.mesh`); a file without faces is read as its vertices
``.ply``               a mesh when it has a ``face`` element (sampled), else its vertices;
                       ASCII and binary (:mod:`bingnn.data.formats.ply`)
``.pcd``               PCL point clouds, ASCII, binary, binary_compressed; NaN points dropped
``.xyz``, ``.txt``,    text, one point a line (``x y z`` then optional columns)
``.csv``, ``.pts``
``.npy``               one cloud ``(N, 3)`` or a stack ``(B, N, 3)``
``.h5``, ``.hdf5``     the dataset ``data``, same shapes (the ModelNet HDF5 layout); needs h5py
=====================  ==========================================================================

Every refusal is one line that names the file (a ``ValueError``, :class:`PointFileError`;
``FileNotFoundError`` for a missing file).

Example::

    from bingnn.data.point_files import read_point_clouds
    clouds = read_point_clouds("chair.off", mesh_points=1024)   # [array (1024, 3), float32]
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .formats import (
    Geometry,
    PointFileError,
    read_h5,
    read_npy,
    read_obj,
    read_off,
    read_pcd,
    read_ply,
    read_text_points,
)
from .mesh import sample_surface

__all__ = [
    "DEFAULT_MESH_POINTS",
    "MESH_EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
    "PointFileError",
    "read_geometry",
    "read_point_clouds",
    "validate_clouds",
]

_SHAPE_READERS = {
    ".off": read_off,
    ".obj": read_obj,
    ".ply": read_ply,
    ".pcd": read_pcd,
    ".xyz": read_text_points,
    ".txt": read_text_points,
    ".csv": read_text_points,
    ".pts": read_text_points,
}
_ARRAY_READERS = {".npy": read_npy, ".h5": read_h5, ".hdf5": read_h5}

SUPPORTED_EXTENSIONS = tuple(_SHAPE_READERS) + tuple(_ARRAY_READERS)
#: Extensions whose files may hold faces (sampled on the surface when they do).
MESH_EXTENSIONS = (".off", ".obj", ".ply")
#: Points drawn on a mesh when the caller does not say how many.
DEFAULT_MESH_POINTS = 2048


def read_geometry(path: str | os.PathLike) -> list[Geometry]:
    """What ``path`` holds, one :class:`~bingnn.data.formats.Geometry` per shape (a stack in a
    ``.npy``/``.h5`` file gives several, without faces).

    Raises:
        FileNotFoundError: no such file.
        PointFileError: a directory, an unknown extension, or a file the reader refuses.
    """
    p = Path(path)
    if p.is_dir():
        raise PointFileError(p, "is a directory, not a point-cloud or mesh file")
    if not p.exists():
        raise FileNotFoundError(f"point-cloud file not found: {p}")
    ext = p.suffix.lower()
    if ext not in _SHAPE_READERS and ext not in _ARRAY_READERS:
        raise PointFileError(
            p, f"unsupported extension {ext or '(none)'!r}; supported: "
            f"{', '.join(SUPPORTED_EXTENSIONS)}"
        )
    try:
        # Casts of signalling NaNs and out-of-range values are the validation's business (it
        # names them), not a RuntimeWarning's.
        with np.errstate(invalid="ignore", over="ignore"):
            if ext in _ARRAY_READERS:
                return [Geometry(c, None) for c in _split_stack(_ARRAY_READERS[ext](p), p)]
            return [_SHAPE_READERS[ext](p)]
    except PointFileError:
        raise
    except OSError as e:  # permissions, I/O errors: one line, with the file
        raise PointFileError(p, f"cannot be read ({e.strerror or e})") from None


def read_point_clouds(
    path: str | os.PathLike,
    *,
    mesh_points: int | None = DEFAULT_MESH_POINTS,
    seed: int = 0,
    oversample: int = 1,
) -> list[np.ndarray]:
    """Read every point cloud stored in ``path``; sample meshes on their surface.

    Args:
        path: a file of one of :data:`SUPPORTED_EXTENSIONS`.
        mesh_points: points drawn on the surface of a mesh (area-weighted, see
            :func:`bingnn.data.mesh.sample_surface`); ``None`` reads a mesh's vertices instead.
        seed: seed of the surface sample (the same seed gives the same points).
        oversample: draw ``oversample * mesh_points`` points and keep ``mesh_points`` by
            farthest-point sampling (evenly spread).

    Returns:
        A list of ``B`` arrays ``(N_b, 3)`` float32 (``B = 1`` except for stacks).

    Raises:
        FileNotFoundError: the file does not exist.
        PointFileError: unknown extension, malformed or truncated file, wrong array shape, an
            empty cloud, NaN/inf coordinates, or a mesh without surface.
    """
    p = Path(path)
    clouds = []
    for g in read_geometry(p):
        if g.is_mesh and mesh_points is not None:
            v = g.vertices
            if not np.isfinite(v).all():
                raise PointFileError(p, "the mesh has NaN/inf vertex coordinates")
            try:
                clouds.append(
                    sample_surface(v, g.triangles, mesh_points, seed=seed, oversample=oversample)
                )
            except ValueError as e:
                raise PointFileError(p, str(e)) from None
        else:
            clouds.append(g.vertices)
    return validate_clouds(clouds, source=str(p))


def validate_clouds(clouds: list[np.ndarray], source: str = "input") -> list[np.ndarray]:
    """Check that each cloud is a non-empty, finite ``(N, 3)`` array; return float32 copies.

    Raises:
        ValueError: naming ``source`` and the offending cloud index.
    """
    if len(clouds) == 0:
        raise PointFileError(source, "contains no point cloud")
    out = []
    many = len(clouds) > 1
    for i, c in enumerate(clouds):
        which = f"cloud {i}" if many else "the cloud"
        c = np.asarray(c)
        if c.ndim != 2 or c.shape[1] != 3:
            raise PointFileError(source, f"{which} has shape {c.shape}, expected (N, 3)")
        if c.shape[0] == 0:
            raise PointFileError(source, f"{which} is empty (0 points)")
        if not np.issubdtype(c.dtype, np.number) or np.iscomplexobj(c):
            raise PointFileError(source, f"{which} has non-real dtype {c.dtype}")
        with np.errstate(over="ignore", invalid="ignore"):
            c = np.ascontiguousarray(c, dtype=np.float32)
        # Checked after the cast: float64 values beyond float32 range become inf here.
        if not np.isfinite(c).all():
            bad = int((~np.isfinite(c)).any(axis=1).sum())
            raise PointFileError(
                source,
                f"{which} has {bad} point(s) with NaN/inf coordinates (or values beyond "
                "float32 range); clean the file first",
            )
        out.append(c)
    return out


def _split_stack(arr: np.ndarray, p: Path) -> list[np.ndarray]:
    if arr.ndim == 2:
        return [arr]
    if arr.ndim == 3:
        if arr.shape[0] == 0:
            raise PointFileError(p, f"the stack holds 0 clouds (shape {arr.shape})")
        return list(arr)
    raise PointFileError(p, f"array has shape {arr.shape}, expected (N, 3) or (B, N, 3)")
