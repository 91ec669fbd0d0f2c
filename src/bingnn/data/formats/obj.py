"""Wavefront OBJ (``.obj``): ``v x y z`` vertices and ``f`` polygons.

Face corners may be ``i``, ``i/t``, ``i//n`` or ``i/t/n``; indices are 1-based, negative ones
count back from the last vertex defined so far. Polygons are fan-triangulated. Everything else
(normals ``vn``, texture coordinates ``vt``, groups, materials, lines ``l``, points ``p``) is
skipped. A file with vertices and no face is a point set.
"""

from __future__ import annotations

from pathlib import Path

from ..mesh import fan_triangulate
from .common import Geometry, PointFileError, number_rows, text_lines

__all__ = ["read_obj"]


def read_obj(path: str | Path, raw: bytes | None = None) -> Geometry:
    """Vertices and triangles of an ``.obj`` file (see the module docstring).

    Raises:
        PointFileError: no vertex, a malformed ``v`` or ``f`` line, or a face index that does
            not name a vertex defined before it.
    """
    p = Path(path)
    raw = p.read_bytes() if raw is None else raw
    vlines: list[tuple[int, str]] = []
    polys: list[list[int]] = []
    for no, text in text_lines(raw):
        key, *more = text.split(None, 1)
        rest = more[0] if more else ""
        if key == "v":
            vlines.append((no, rest))
        elif key == "f":
            polys.append(_face(p, no, rest, len(vlines)))
    if not vlines:
        raise PointFileError(p, "no vertex ('v x y z' line): not an OBJ file, or an empty one")
    vertices = number_rows(p, vlines, 3, "a vertex 'v x y z'")
    if not polys:
        return Geometry(vertices, None)
    return Geometry(vertices, fan_triangulate(polys))


def _face(p: Path, no: int, rest: str, nv: int) -> list[int]:
    idx = []
    for corner in rest.split():
        try:
            i = int(corner.split("/", 1)[0])
        except ValueError:
            raise PointFileError(p, f"line {no}: malformed face corner {corner[:30]!r}") from None
        j = i - 1 if i > 0 else nv + i  # 1-based, or relative to the vertices so far
        if i == 0 or not 0 <= j < nv:
            raise PointFileError(
                p, f"line {no}: face index {i} does not name one of the {nv} vertices before it"
            )
        idx.append(j)
    if len(idx) < 3:
        raise PointFileError(p, f"line {no}: a face needs at least 3 vertices, got {len(idx)}")
    return idx

