"""Plain-text point lists (``.xyz``, ``.txt``, ``.csv``, ``.pts``): one point a line.

Each line holds ``x y z`` then optional extra columns (normals, colours, intensity), separated by
spaces, tabs or commas; only the first three values count. ``#`` starts a comment. Lines before
the first point that are not three numbers (a header such as ``x,y,z`` or a point count) are
skipped; after it, every line must be a point.
"""

from __future__ import annotations

from pathlib import Path

from .common import Geometry, PointFileError, number_rows, text_lines

__all__ = ["read_text_points"]


def read_text_points(path: str | Path, raw: bytes | None = None) -> Geometry:
    """The points of a text point list (see the module docstring).

    Raises:
        PointFileError: binary content, no point line, or a malformed line after the first
            point.
    """
    p = Path(path)
    raw = p.read_bytes() if raw is None else raw
    if b"\0" in raw[:4096]:
        raise PointFileError(p, "binary data, not a text point list (x y z per line)")
    lines = text_lines(raw)
    first = next((i for i, (_, t) in enumerate(lines) if _is_point(t)), None)
    if first is None:
        raise PointFileError(p, "no line holds a point 'x y z' (three numbers)")
    rows = [(no, t.replace(",", " ").replace(";", " ")) for no, t in lines[first:]]
    return Geometry(number_rows(p, rows, 3, "a point 'x y z'"), None)


def _is_point(text: str) -> bool:
    tok = text.replace(",", " ").replace(";", " ").split()
    if len(tok) < 3:
        return False
    try:
        [float(t) for t in tok[:3]]
    except ValueError:
        return False
    return True
