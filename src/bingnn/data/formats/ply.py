"""Polygon File Format (``.ply``): point clouds and meshes, ASCII and binary.

Formats ``ascii``, ``binary_little_endian`` and ``binary_big_endian``. Read: the ``x``, ``y``,
``z`` properties of the ``vertex`` element (any scalar type: ``float``, ``double``, ``int``,
``uchar``, ... in either spelling, e.g. ``float32``) and the first list property of the
``face`` element (``vertex_indices`` or ``vertex_index``), whose polygons are fan-triangulated.
Other properties (normals, colours) and elements (edges, materials) are skipped. A file without
faces is a point set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..mesh import fan_triangulate
from .common import MAX_ARRAY_BYTES, Geometry, PointFileError

__all__ = ["read_ply"]

# PLY scalar type names (both the classic and the sized spellings) -> numpy type codes.
_TYPES = {
    "char": "i1", "int8": "i1",
    "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4",
    "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}  # fmt: skip


class _Element:
    def __init__(self, name: str, count: int):
        self.name = name
        self.count = count
        # (name, type code) for scalars; (name, count type code, item type code) for lists
        self.props: list[tuple[str, ...]] = []

    @property
    def lists(self) -> list[int]:
        return [i for i, pr in enumerate(self.props) if len(pr) == 3]


def read_ply(path: str | Path, raw: bytes | None = None) -> Geometry:
    """Vertices and triangles of a ``.ply`` file (see the module docstring).

    Raises:
        PointFileError: not PLY, unsupported format, malformed header, truncated or malformed
            data, or face indices outside the vertex range.
    """
    p = Path(path)
    raw = p.read_bytes() if raw is None else raw
    fmt, elements, start = _parse_header(raw, p)
    by_name = {e.name: e for e in elements}
    vertex = by_name.get("vertex")
    if vertex is None:
        raise PointFileError(p, "PLY file has no 'vertex' element")
    names = [pr[0] for pr in vertex.props]
    missing = [a for a in ("x", "y", "z") if a not in names]
    if missing:
        raise PointFileError(p, f"PLY vertex element lacks properties {missing}")
    if any(len(vertex.props[i]) == 3 for i in _xyz_order(vertex)):
        raise PointFileError(p, "PLY vertex coordinates x, y, z must be scalar properties")
    face = by_name.get("face")
    if face is not None and not face.lists:
        face = None  # a face element without a list of indices carries no polygon
    wanted = {id(vertex), id(face)} - {id(None)}
    if fmt == "ascii":
        tables = _read_ascii(raw[start:], elements, wanted, p)
    else:
        tables = _read_binary(raw, start, "<" if fmt == "binary_little_endian" else ">",
                              elements, wanted, p)
    vertices = tables[id(vertex)]
    if face is None or face.count == 0:
        return Geometry(vertices, None)
    polys = tables[id(face)]
    nv = len(vertices)
    try:
        tri = polys if isinstance(polys, np.ndarray) else fan_triangulate(polys)
    except OverflowError:
        raise PointFileError(p, "a face index is out of range") from None
    if tri.size and (tri.min() < 0 or tri.max() >= nv):
        bad = int(tri.max()) if tri.max() >= nv else int(tri.min())
        raise PointFileError(p, f"a face refers to vertex {bad} but there are {nv} vertices")
    return Geometry(vertices, tri.astype(np.int64, copy=False))


def _parse_header(raw: bytes, p: Path) -> tuple[str, list[_Element], int]:
    """Return (format, elements, byte offset of the body)."""
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise PointFileError(p, "not a PLY file (missing 'ply' magic or 'end_header')")
    nl = raw.find(b"\n", end)
    body_start = len(raw) if nl < 0 else nl + 1
    try:
        lines = raw[:end].decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise PointFileError(p, "PLY header is not ASCII") from None
    fmt = None
    elements: list[_Element] = []
    for ln in lines[1:]:
        tok = ln.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        try:
            if tok[0] == "format":
                fmt = tok[1]
            elif tok[0] == "element":
                count = int(tok[2])
                if count < 0:
                    raise ValueError
                elements.append(_Element(tok[1], count))
            elif tok[0] == "property":
                if not elements:
                    raise ValueError
                if tok[1] == "list":
                    if _TYPES[tok[2]][0] == "f":
                        raise ValueError  # a list length must be an integer
                    elements[-1].props.append((tok[4], _TYPES[tok[2]], _TYPES[tok[3]]))
                else:
                    elements[-1].props.append((tok[2], _TYPES[tok[1]]))
            else:
                raise ValueError
        except (IndexError, KeyError, ValueError):
            raise PointFileError(p, f"malformed PLY header line {ln[:60]!r}") from None
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise PointFileError(p, f"unsupported or missing PLY format {str(fmt)[:30]!r}")
    return fmt, elements, body_start


def _xyz_order(e: _Element) -> list[int]:
    names = [pr[0] for pr in e.props]
    return [names.index(a) for a in ("x", "y", "z")]


# ---- ASCII: one element item per line ---------------------------------------------------------


def _read_ascii(body: bytes, elements: list[_Element], wanted: set[int], p: Path) -> dict:
    lines = [ln for ln in body.decode("ascii", errors="replace").splitlines() if ln.strip()]
    out: dict = {}
    at = 0
    for e in elements:
        if id(e) not in wanted:
            at += e.count
            continue
        rows = lines[at : at + e.count]
        if len(rows) < e.count:
            raise PointFileError(
                p, f"truncated PLY: expected {e.count} {e.name} lines, found {len(rows)}"
            )
        at += e.count
        out[id(e)] = _ascii_vertex(rows, e, p) if e.name == "vertex" else _ascii_faces(rows, e, p)
    return out


def _ascii_items(rows: list[str], e: _Element, p: Path):
    """Per line: {scalar name: float}, and the first list's values (ints)."""
    first_list = e.lists[0] if e.lists else None
    for r, ln in enumerate(rows):
        tok, k, vals, lst = ln.split(), 0, {}, None
        try:
            for i, pr in enumerate(e.props):
                if len(pr) == 3:
                    m = int(tok[k])
                    if m < 0 or k + 1 + m > len(tok):
                        raise ValueError
                    if i == first_list:
                        lst = [int(t) for t in tok[k + 1 : k + 1 + m]]
                    k += 1 + m
                else:
                    vals[pr[0]] = float(tok[k])
                    k += 1
            if k != len(tok):
                raise ValueError
        except (ValueError, IndexError):
            raise PointFileError(
                p, f"malformed PLY {e.name} data in item {r} (wrong number or kind of values)"
            ) from None
        yield vals, lst


def _ascii_vertex(rows: list[str], e: _Element, p: Path) -> np.ndarray:
    if not e.lists:
        try:
            table = np.array([ln.split() for ln in rows], dtype=np.float64)
        except ValueError:
            table = None  # ragged or not numbers: the item walk names the problem
        if table is not None and table.shape == (len(rows), len(e.props)):
            return np.ascontiguousarray(table[:, _xyz_order(e)])
    out = np.empty((len(rows), 3))
    for r, (vals, _) in enumerate(_ascii_items(rows, e, p)):
        out[r] = (vals["x"], vals["y"], vals["z"])
    return out


def _ascii_faces(rows: list[str], e: _Element, p: Path) -> np.ndarray | list[list[int]]:
    if len(e.props) == 1:  # only the index list: try all-triangles in one C-level parse
        try:
            flat = np.fromstring(" ".join(rows), dtype=np.int64, sep=" ")
        except ValueError:
            flat = None
        if flat is not None and flat.size == 4 * len(rows):
            table = flat.reshape(-1, 4)
            if (table[:, 0] == 3).all():
                return np.ascontiguousarray(table[:, 1:])
    return [lst for _, lst in _ascii_items(rows, e, p)]


# ---- binary -----------------------------------------------------------------------------------


def _read_binary(raw: bytes, offset: int, endian: str, elements: list[_Element],
                 wanted: set[int], p: Path) -> dict:
    out: dict = {}
    for e in elements:
        if not e.lists:
            dt = np.dtype([(f"p{i}", endian + pr[1]) for i, pr in enumerate(e.props)])
            size = dt.itemsize * e.count
            _need(raw, offset, size, p, e)
            if id(e) in wanted:
                table = np.frombuffer(raw, dtype=dt, count=e.count, offset=offset)
                out[id(e)] = np.stack(
                    [table[f"p{i}"].astype(np.float64) for i in _xyz_order(e)], axis=1
                )
            offset += size
            continue
        offset, value = _binary_list_element(raw, offset, endian, e, p, id(e) in wanted)
        if value is not None:
            out[id(e)] = value
    return out


def _need(raw: bytes, offset: int, n: int, p: Path, e: _Element) -> None:
    if n > MAX_ARRAY_BYTES or offset + n > len(raw):
        raise PointFileError(p, f"truncated binary PLY (the {e.name} data ends early)")


def _binary_list_element(raw, offset, endian, e: _Element, p: Path, keep: bool):
    """Walk an element with list properties. Fast path: every list of the element as long as
    in its first item (all triangles, say) -> one structured read, checked."""
    if e.count == 0:
        return offset, (np.empty((0, 3), np.int64) if e.name != "vertex" else np.empty((0, 3)))
    fixed = _fixed_list_dtype(raw, offset, endian, e)
    if fixed is not None and fixed.itemsize * e.count <= len(raw) - offset:
        table = np.frombuffer(raw, dtype=fixed, count=e.count, offset=offset)
        if all((table[f"n{i}"] == fixed[f"v{i}"].shape[0]).all() for i in e.lists):
            value = None
            if keep:
                value = _from_table(table, e, fixed)
            return offset + fixed.itemsize * e.count, value
    # General walk, item by item (variable polygon sizes).
    first_list = e.lists[0]
    rows, polys = [], []
    for _ in range(e.count):
        vals, lst = {}, None
        for i, pr in enumerate(e.props):
            if len(pr) == 3:
                cdt = np.dtype(endian + pr[1])
                _need(raw, offset, cdt.itemsize, p, e)
                m = int(np.frombuffer(raw, cdt, 1, offset)[0])
                offset += cdt.itemsize
                idt = np.dtype(endian + pr[2])
                if m < 0:
                    raise PointFileError(p, f"negative list length in the {e.name} data")
                _need(raw, offset, idt.itemsize * m, p, e)
                if keep and i == first_list:
                    lst = np.frombuffer(raw, idt, m, offset).astype(np.int64).tolist()
                offset += idt.itemsize * m
            else:
                sdt = np.dtype(endian + pr[1])
                _need(raw, offset, sdt.itemsize, p, e)
                vals[pr[0]] = float(np.frombuffer(raw, sdt, 1, offset)[0])
                offset += sdt.itemsize
        if keep:
            if e.name == "vertex":
                rows.append((vals["x"], vals["y"], vals["z"]))
            else:
                polys.append(lst)
    if not keep:
        return offset, None
    return offset, (np.array(rows, dtype=np.float64).reshape(-1, 3) if e.name == "vertex"
                    else polys)


def _fixed_list_dtype(raw, offset, endian, e: _Element) -> np.dtype | None:
    """The item dtype if every list had the length found in the first item, else ``None``."""
    fields = []
    at = offset
    for i, pr in enumerate(e.props):
        if len(pr) == 3:
            cdt = np.dtype(endian + pr[1])
            if at + cdt.itemsize > len(raw):
                return None
            m = int(np.frombuffer(raw, cdt, 1, at)[0])
            if m < 0 or m > 1 << 16:
                return None
            idt = np.dtype(endian + pr[2])
            fields += [(f"n{i}", cdt), (f"v{i}", idt, (m,))]
            at += cdt.itemsize + idt.itemsize * m
        else:
            sdt = np.dtype(endian + pr[1])
            fields.append((f"s{i}", sdt))
            at += sdt.itemsize
    return np.dtype(fields)


def _from_table(table: np.ndarray, e: _Element, dt: np.dtype):
    if e.name == "vertex":
        names = [pr[0] for pr in e.props]
        return np.stack(
            [table[f"s{names.index(a)}"].astype(np.float64) for a in ("x", "y", "z")], axis=1
        )
    idx = table[f"v{e.lists[0]}"].astype(np.int64)
    m = idx.shape[1]
    if m == 3:
        return np.ascontiguousarray(idx)
    if m < 3:
        return np.empty((0, 3), np.int64)
    # Fan-triangulate m-gons at once: (v0, v_i, v_{i+1}), i = 1 .. m-2.
    i = np.arange(1, m - 1)
    return np.stack([np.repeat(idx[:, :1], m - 2, 1), idx[:, i], idx[:, i + 1]], -1).reshape(-1, 3)
