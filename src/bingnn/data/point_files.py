"""Read point clouds from files with numpy only (no PyTorch), for training and the engine alike.

Every reader returns a list of clouds, each a C-contiguous ``float32`` array of shape ``(N, 3)``
(x, y, z), finite and non-empty. Formats, chosen by file extension:

* ``.npy``: one cloud ``(N, 3)`` or a stack ``(B, N, 3)``;
* ``.h5`` / ``.hdf5``: the dataset ``data`` (same shapes; the ModelNet40 HDF5 layout); needs h5py;
* ``.ply``: ``ascii``, ``binary_little_endian`` and ``binary_big_endian``; the ``x``, ``y``, ``z``
  properties of the ``vertex`` element, of any scalar type (``float``/``double``/``int``/...);
  other properties and elements (faces, normals, colours) are skipped;
* ``.off``: Object File Format, including the common variant whose first line is
  ``OFF<nv> <nf> <ne>`` or ``OFF <nv> <nf> <ne>``; only vertices are read.

Example::

    from bingnn.data.point_files import read_point_clouds
    clouds = read_point_clouds("chair.ply")   # [array of shape (N, 3), float32]
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["SUPPORTED_EXTENSIONS", "read_point_clouds", "validate_clouds"]

SUPPORTED_EXTENSIONS = (".npy", ".h5", ".hdf5", ".ply", ".off")

# PLY scalar type names (both the classic and the sized spellings) -> numpy type codes.
_PLY_TYPES = {
    "char": "i1", "int8": "i1",
    "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4",
    "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}  # fmt: skip


def read_point_clouds(path: str | os.PathLike) -> list[np.ndarray]:
    """Read every point cloud stored in ``path``.

    Args:
        path: a ``.npy``, ``.h5``/``.hdf5``, ``.ply`` or ``.off`` file.

    Returns:
        A list of ``B`` arrays of shape ``(N_b, 3)``, dtype ``float32`` (``B = 1`` for PLY/OFF
        and for a single ``(N, 3)`` array).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown extension, malformed or truncated file, wrong array shape, an empty
            cloud, or NaN/inf coordinates.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"point-cloud file not found: {p}")
    ext = p.suffix.lower()
    if ext == ".npy":
        clouds = _read_npy(p)
    elif ext in (".h5", ".hdf5"):
        clouds = _read_h5(p)
    elif ext == ".ply":
        clouds = [_read_ply(p)]
    elif ext == ".off":
        clouds = [_read_off(p)]
    else:
        raise ValueError(
            f"unsupported point-cloud file extension {ext!r} for {p}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    return validate_clouds(clouds, source=str(p))


def validate_clouds(clouds: list[np.ndarray], source: str = "input") -> list[np.ndarray]:
    """Check that each cloud is a non-empty, finite ``(N, 3)`` array; return float32 copies.

    Raises:
        ValueError: naming ``source`` and the offending cloud index.
    """
    if len(clouds) == 0:
        raise ValueError(f"{source}: contains no point cloud")
    out = []
    for i, c in enumerate(clouds):
        c = np.asarray(c)
        if c.ndim != 2 or c.shape[1] != 3:
            raise ValueError(f"{source}: cloud {i} has shape {c.shape}, expected (N, 3)")
        if c.shape[0] == 0:
            raise ValueError(f"{source}: cloud {i} is empty (0 points)")
        if not np.issubdtype(c.dtype, np.number) or np.iscomplexobj(c):
            raise ValueError(f"{source}: cloud {i} has non-real dtype {c.dtype}")
        with np.errstate(over="ignore"):
            c = np.ascontiguousarray(c, dtype=np.float32)
        # Checked after the cast: float64 values beyond float32 range become inf here.
        if not np.isfinite(c).all():
            bad = int((~np.isfinite(c)).any(axis=1).sum())
            raise ValueError(
                f"{source}: cloud {i} has {bad} point(s) with NaN/inf coordinates "
                "(or values beyond float32 range); clean the file first"
            )
        out.append(c)
    return out


def _split_stack(arr: np.ndarray, source: str) -> list[np.ndarray]:
    if arr.ndim == 2:
        return [arr]
    if arr.ndim == 3:
        if arr.shape[0] == 0:
            raise ValueError(f"{source}: the stack holds 0 clouds (shape {arr.shape})")
        return list(arr)
    raise ValueError(f"{source}: array has shape {arr.shape}, expected (N, 3) or (B, N, 3)")


def _read_npy(p: Path) -> list[np.ndarray]:
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{p}: not a readable .npy file ({e})") from e
    if not isinstance(arr, np.ndarray):  # .npz archives are handled by np.load too
        raise ValueError(f"{p}: expected a single array in a .npy file")
    return _split_stack(arr, str(p))


def _read_h5(p: Path) -> list[np.ndarray]:
    try:
        import h5py  # lazy: the engine only needs it for HDF5 inputs
    except ImportError as e:  # pragma: no cover - h5py is a declared dependency
        raise ImportError("reading .h5 point clouds needs h5py: pip install h5py") from e
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise ValueError(f"{p}: not a readable HDF5 file ({e})") from e
    with f:
        if "data" not in f:
            raise ValueError(
                f"{p}: HDF5 file has no dataset 'data' (found: {sorted(f.keys())}); "
                "store the clouds as data with shape (B, N, 3)"
            )
        try:
            arr = np.asarray(f["data"][()])
        except OSError as e:
            raise ValueError(f"{p}: dataset 'data' cannot be read ({e}); truncated file?") from e
    return _split_stack(arr, str(p))


# --------------------------------------------------------------------------------------------
# PLY
# --------------------------------------------------------------------------------------------


class _PlyElement:
    def __init__(self, name: str, count: int):
        self.name = name
        self.count = count
        # (name, dtype code) for scalars; (name, count code, item code) for lists
        self.props: list[tuple[str, ...]] = []

    @property
    def has_list(self) -> bool:
        return any(len(pr) == 3 for pr in self.props)


def _parse_ply_header(raw: bytes, p: Path) -> tuple[str, list[_PlyElement], int]:
    """Return (format, elements, byte offset of the body)."""
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise ValueError(f"{p}: not a PLY file (missing 'ply' magic or 'end_header')")
    nl = raw.find(b"\n", end)
    body_start = len(raw) if nl < 0 else nl + 1
    try:
        lines = raw[:end].decode("ascii").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{p}: PLY header is not ASCII") from e
    fmt = None
    elements: list[_PlyElement] = []
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
                elements.append(_PlyElement(tok[1], count))
            elif tok[0] == "property":
                if not elements:
                    raise ValueError
                if tok[1] == "list":
                    elements[-1].props.append((tok[4], _PLY_TYPES[tok[2]], _PLY_TYPES[tok[3]]))
                else:
                    elements[-1].props.append((tok[2], _PLY_TYPES[tok[1]]))
            else:
                raise ValueError
        except (IndexError, KeyError, ValueError):
            raise ValueError(f"{p}: malformed PLY header line {ln!r}") from None
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ValueError(f"{p}: unsupported or missing PLY format {fmt!r}")
    return fmt, elements, body_start


def _read_ply(p: Path) -> np.ndarray:
    raw = p.read_bytes()
    fmt, elements, start = _parse_ply_header(raw, p)
    names = [e.name for e in elements]
    if "vertex" not in names:
        raise ValueError(f"{p}: PLY file has no 'vertex' element")
    vertex = elements[names.index("vertex")]
    pnames = [pr[0] for pr in vertex.props]
    missing = [a for a in ("x", "y", "z") if a not in pnames]
    if missing:
        raise ValueError(f"{p}: PLY vertex element lacks properties {missing}")
    if fmt == "ascii":
        return _read_ply_ascii(raw[start:], elements, vertex, p)
    return _read_ply_binary(
        raw, start, "<" if fmt == "binary_little_endian" else ">", elements, vertex, p
    )


def _read_ply_ascii(body: bytes, elements, vertex: _PlyElement, p: Path) -> np.ndarray:
    lines = [ln for ln in body.decode("ascii", errors="replace").splitlines() if ln.strip()]
    # In ASCII PLY every element item is one line, so earlier elements are skipped by count.
    skip = 0
    for e in elements:
        if e is vertex:
            break
        skip += e.count
    rows = lines[skip : skip + vertex.count]
    if len(rows) < vertex.count:
        raise ValueError(
            f"{p}: truncated PLY: expected {vertex.count} vertex lines, found {len(rows)}"
        )
    cols = [i for i, pr in enumerate(vertex.props) if pr[0] in ("x", "y", "z")]
    order = [cols[[vertex.props[c][0] for c in cols].index(a)] for a in ("x", "y", "z")]
    try:
        if not vertex.has_list:
            toks = [ln.split() for ln in rows]
            if any(len(t) != len(vertex.props) for t in toks):
                raise ValueError
            table = np.array(toks, dtype=np.float64).reshape(vertex.count, len(vertex.props))
            return table[:, order]
        out = np.empty((vertex.count, 3))
        for r, ln in enumerate(rows):  # rare: list properties inside the vertex element
            tok, vals, k = ln.split(), {}, 0
            for pr in vertex.props:
                if len(pr) == 3:
                    k += 1 + int(tok[k])
                else:
                    vals[pr[0]] = float(tok[k])
                    k += 1
            out[r] = (vals["x"], vals["y"], vals["z"])
        return out
    except (ValueError, IndexError):
        raise ValueError(f"{p}: malformed PLY vertex data (wrong number of values)") from None


def _read_ply_binary(raw: bytes, offset: int, endian: str, elements, vertex, p: Path):
    def need(n: int) -> None:
        if offset + n > len(raw):
            raise ValueError(f"{p}: truncated binary PLY (element data ends early)")

    for e in elements:
        if not e.has_list:
            dt = np.dtype([(f"p{i}", endian + pr[1]) for i, pr in enumerate(e.props)])
            need(dt.itemsize * e.count)
            if e is vertex:
                table = np.frombuffer(raw, dtype=dt, count=e.count, offset=offset)
                idx = {pr[0]: f"p{i}" for i, pr in enumerate(e.props)}
                return np.stack([table[idx[a]].astype(np.float64) for a in ("x", "y", "z")], 1)
            offset += dt.itemsize * e.count
            continue
        # Elements with list properties have variable-size items: walk them one by one.
        out = np.empty((e.count, 3)) if e is vertex else None
        for r in range(e.count):
            vals = {}
            for pr in e.props:
                if len(pr) == 3:
                    cdt = np.dtype(endian + pr[1])
                    need(cdt.itemsize)
                    n = int(np.frombuffer(raw, cdt, 1, offset)[0])
                    offset += cdt.itemsize
                    step = np.dtype(pr[2]).itemsize * n
                    need(step)
                    offset += step
                else:
                    sdt = np.dtype(endian + pr[1])
                    need(sdt.itemsize)
                    vals[pr[0]] = float(np.frombuffer(raw, sdt, 1, offset)[0])
                    offset += sdt.itemsize
            if out is not None:
                out[r] = (vals["x"], vals["y"], vals["z"])
        if out is not None:
            return out
    raise AssertionError("unreachable: vertex element checked above")


# --------------------------------------------------------------------------------------------
# OFF
# --------------------------------------------------------------------------------------------


def _read_off(p: Path) -> np.ndarray:
    text = p.read_bytes().decode("ascii", errors="replace")
    lines = []
    for ln in text.splitlines():
        ln = ln.split("#", 1)[0].strip()
        if ln:
            lines.append(ln)
    if not lines or not lines[0].startswith("OFF"):
        raise ValueError(f"{p}: not an OFF file (first line must start with 'OFF')")
    head = lines[0][3:].split()  # "OFF", "OFF 8 6 0" and "OFF8 6 0" all occur in the wild
    rest = lines[1:]
    if not head:
        if not rest:
            raise ValueError(f"{p}: OFF file has no vertex/face counts line")
        head, rest = rest[0].split(), rest[1:]
    try:
        nv = int(head[0])
        if nv < 0:
            raise ValueError
    except (IndexError, ValueError):
        raise ValueError(f"{p}: malformed OFF counts line {head!r}") from None
    if len(rest) < nv:
        raise ValueError(f"{p}: truncated OFF file: expected {nv} vertices, found {len(rest)}")
    try:
        # Vertex lines may carry colours after x y z; only the first three values count.
        return np.array([ln.split()[:3] for ln in rest[:nv]], dtype=np.float64).reshape(nv, 3)
    except ValueError:
        raise ValueError(f"{p}: malformed OFF vertex line (need three numbers)") from None
