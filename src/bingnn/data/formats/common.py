"""What every point/mesh file reader shares: the error type, the result type, the size limit
and a fast parser for columns of numbers."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "MAX_ARRAY_BYTES",
    "Geometry",
    "PointFileError",
    "number_rows",
    "text_lines",
]

#: The largest array a reader materialises (2 GiB): a corrupt header or a huge declared size is
#: refused before any allocation instead of exhausting memory.
MAX_ARRAY_BYTES = 1 << 31


class PointFileError(ValueError):
    """A point-cloud or mesh file that cannot be read; the message is one line that starts with
    the file's path and says what is wrong."""

    def __init__(self, path: str | Path, message: str):
        self.path = str(path)
        one_line = " ".join(str(message).split())
        super().__init__(f"{path}: {one_line}")


@dataclass(frozen=True)
class Geometry:
    """What a single-shape file holds: ``vertices`` ``(V, 3)`` float64 and, for a mesh,
    ``triangles`` ``(F, 3)`` int64 (``None`` or ``F = 0``: a plain point set)."""

    vertices: np.ndarray
    triangles: np.ndarray | None = None

    @property
    def is_mesh(self) -> bool:
        return self.triangles is not None and len(self.triangles) > 0


def text_lines(raw: bytes, comment: str = "#") -> list[tuple[int, str]]:
    """``(1-based line number, text)`` of the non-empty lines of ``raw``, comments removed.
    Bytes that are not ASCII become U+FFFD (they can only be part of an error)."""
    out = []
    for i, ln in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        if comment:
            ln = ln.split(comment, 1)[0]
        ln = ln.strip()
        if ln:
            out.append((i, ln))
    return out


def number_rows(
    path: Path, lines: list[tuple[int, str]], width: int, what: str, *, exact: bool = False
) -> np.ndarray:
    """The first ``width`` numbers of each line -> ``(len(lines), width)`` float64.

    With ``exact``, lines must hold exactly ``width`` numbers. Extra columns (colours, normals)
    are otherwise ignored. Fast path: one C-level parse when every line holds ``width`` values.

    Raises:
        PointFileError: naming the first bad line.
    """
    if not lines:
        return np.empty((0, width))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            flat = np.fromstring(" ".join(t for _, t in lines), dtype=np.float64, sep=" ")
        except (ValueError, DeprecationWarning):
            flat = None
    if flat is not None and flat.size == width * len(lines):
        # Same count of values as lines x width, and each line holds >= width values unless some
        # hold fewer and others more: verify cheaply only when the count is ambiguous.
        if all(len(t.split(None, width)) == width for _, t in lines):
            return flat.reshape(len(lines), width)
    out = np.empty((len(lines), width))
    for r, (no, text) in enumerate(lines):
        tok = text.replace(",", " ").split()
        if len(tok) < width or (exact and len(tok) != width):
            raise PointFileError(
                path, f"line {no}: expected {width} numbers for {what}, got {_show(text)}"
            )
        try:
            out[r] = [float(x) for x in tok[:width]]
        except ValueError:
            raise PointFileError(
                path, f"line {no}: expected numbers for {what}, got {_show(text)}"
            ) from None
    return out


def _show(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
