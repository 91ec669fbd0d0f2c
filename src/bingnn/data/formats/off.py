"""Object File Format (``.off``), the format of the ModelNet meshes.

::

    OFF                      # or COFF / NOFF / CNOFF / STOFF, etc.: optional per-vertex extras
    nv nf ne                 # ne (edge count) is optional and ignored
    x y z [extras]           # nv vertex lines
    m i_1 ... i_m [colour]   # nf face lines: a polygon of m vertices (0-based)

Quirks met in the wild and accepted: the counts on the keyword's line (``OFF 8 6 0``) or glued
to it (``OFF8 6 0``, hundreds of official ModelNet files), ``#`` comments, blank lines, colour
values after a face's indices, and polygons of any size (fan-triangulated). A file with no face
is a point set. Binary OFF and higher dimensions (``4OFF``, ``nOFF``) are refused.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..mesh import fan_triangulate
from .common import Geometry, PointFileError, number_rows, text_lines

__all__ = ["read_off"]

_KEYWORD = re.compile(r"^(ST)?(C)?(N)?(4)?(n)?OFF", re.ASCII)


def read_off(path: str | Path, raw: bytes | None = None) -> Geometry:
    """Vertices and triangles of an ``.off`` file (see the module docstring).

    Raises:
        PointFileError: not OFF, truncated, malformed counts/vertices/faces, or a face index
            outside ``[0, nv)``.
    """
    p = Path(path)
    raw = p.read_bytes() if raw is None else raw
    lines = text_lines(raw)
    m = _KEYWORD.match(lines[0][1]) if lines else None
    if m is None:
        raise PointFileError(p, "not an OFF file (the first line must start with 'OFF')")
    if m.group(4) or m.group(5):
        raise PointFileError(p, "4OFF/nOFF files (not 3-D) are not supported")
    head = lines[0][1][m.end():].split()
    if head[:1] == ["BINARY"]:
        raise PointFileError(p, "binary OFF is not supported; save it as ASCII OFF")
    rest = lines[1:]
    if not head:
        if not rest:
            raise PointFileError(p, "no vertex/face counts line after 'OFF'")
        head, rest = rest[0][1].split(), rest[1:]
    try:
        nv, nf = int(head[0]), int(head[1])
        if nv < 0 or nf < 0:
            raise ValueError
    except (IndexError, ValueError):
        raise PointFileError(
            p, f"malformed counts line {' '.join(head)[:60]!r}: need 'nv nf ne'"
        ) from None
    if len(rest) < nv + nf:
        have_v = min(len(rest), nv)
        raise PointFileError(
            p,
            f"truncated OFF file: expected {nv} vertices and {nf} faces, found {have_v} vertex "
            f"and {len(rest) - have_v} face lines",
        )
    vertices = number_rows(p, rest[:nv], 3, "a vertex")
    if nf == 0:
        return Geometry(vertices, None)
    return Geometry(vertices, _faces(p, rest[nv : nv + nf], nv))


def _faces(p: Path, lines: list[tuple[int, str]], nv: int) -> np.ndarray:
    tri = _triangles_fast(lines)
    if tri is None:
        polys = []
        for no, text in lines:
            tok = text.split()
            try:
                m = int(tok[0])
                if m < 0 or len(tok) < 1 + m:
                    raise ValueError
                idx = [int(t) for t in tok[1 : 1 + m]]
            except (IndexError, ValueError):
                raise PointFileError(
                    p, f"line {no}: malformed face {text[:60]!r}: need 'm i_1 ... i_m'"
                ) from None
            _check_range(p, idx, nv, no)
            polys.append(idx)
        return fan_triangulate(polys)
    if tri.size:
        _check_range(p, (int(tri.min()), int(tri.max())), nv)
    return tri


def _check_range(p: Path, idx, nv: int, line: int | None = None) -> None:
    bad = [i for i in idx if not 0 <= i < nv]
    if bad:
        where = f"line {line}: " if line is not None else ""
        raise PointFileError(
            p, f"{where}a face refers to vertex {bad[0]} but there are {nv} vertices"
        )


def _triangles_fast(lines: list[tuple[int, str]]) -> np.ndarray | None:
    """All faces ``3 a b c`` (the usual case): one C-level parse; else ``None``."""
    try:
        flat = np.fromstring(" ".join(t for _, t in lines), dtype=np.int64, sep=" ")
    except ValueError:
        return None
    if flat.size != 4 * len(lines):
        return None
    table = flat.reshape(-1, 4)
    if not (table[:, 0] == 3).all():
        return None
    return np.ascontiguousarray(table[:, 1:])
