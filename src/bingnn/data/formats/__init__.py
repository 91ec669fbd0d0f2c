"""One reader per point-cloud / mesh file format (numpy only; h5py for ``.h5``).

Each reader takes a path and returns what the file holds: a :class:`Geometry` (vertices, and
triangles for a mesh) for the single-shape formats (OFF, OBJ, PLY, PCD, text), an array for the
array formats (``.npy``, ``.h5``). Every refusal is a :class:`PointFileError` (a
``ValueError``) whose one-line message starts with the file's path. The front end that picks the
reader by extension and samples meshes is :mod:`bingnn.data.point_files`.
"""

from .arrays import read_h5, read_npy
from .common import MAX_ARRAY_BYTES, Geometry, PointFileError
from .obj import read_obj
from .off import read_off
from .pcd import lzf_decompress, read_pcd
from .ply import read_ply
from .text import read_text_points

__all__ = [
    "MAX_ARRAY_BYTES",
    "Geometry",
    "PointFileError",
    "lzf_decompress",
    "read_h5",
    "read_npy",
    "read_obj",
    "read_off",
    "read_pcd",
    "read_ply",
    "read_text_points",
]
