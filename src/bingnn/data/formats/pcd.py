"""Point Cloud Library files (``.pcd``, versions 0.5 to 0.7): ``DATA ascii``, ``binary`` and
``binary_compressed`` (LZF).

The header names the fields (``FIELDS x y z rgb ...``), their byte ``SIZE``, ``TYPE`` (``F``
float, ``I`` signed, ``U`` unsigned) and ``COUNT``, and the number of points (``POINTS``, or
``WIDTH * HEIGHT``). ``binary`` stores the points one after the other; ``binary_compressed``
stores two ``uint32`` (compressed and uncompressed byte sizes) then the LZF-compressed fields
one after the other (all ``x``, then all ``y``, ...).

Points whose ``x``, ``y`` or ``z`` is NaN or infinite are **dropped**: depth sensors write NaN
for pixels without a return in organised clouds (``HEIGHT > 1``), as PCL's
``removeNaNFromPointCloud`` would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import MAX_ARRAY_BYTES, Geometry, PointFileError, number_rows

__all__ = ["lzf_decompress", "read_pcd"]

_KEYS = ("VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT", "POINTS")


def read_pcd(path: str | Path, raw: bytes | None = None) -> Geometry:
    """The finite points of a ``.pcd`` file (see the module docstring).

    Raises:
        PointFileError: not a PCD file, malformed header, no x/y/z fields, truncated or
            corrupt (compressed) data, or no finite point.
    """
    p = Path(path)
    raw = p.read_bytes() if raw is None else raw
    head, data_kind, body = _parse_header(raw, p)
    fields, sizes, types, counts, n = head
    if data_kind == "ascii":
        width = sum(counts)
        lines = [(i, ln.strip()) for i, ln in enumerate(
            body.decode("ascii", errors="replace").splitlines(), 1) if ln.strip()]
        if len(lines) < n:
            raise PointFileError(p, f"truncated PCD: {n} points declared, {len(lines)} lines")
        table = number_rows(p, lines[:n], width, "a point", exact=True)
        cols = np.cumsum([0, *counts])
        xyz = table[:, [cols[fields.index(a)] for a in "xyz"]]
    else:
        dts = [np.dtype(f"<{t.lower()}{s}") for t, s in zip(types, sizes, strict=True)]
        point_size = sum(s * c for s, c in zip(sizes, counts, strict=True))
        if n * point_size > MAX_ARRAY_BYTES:
            raise PointFileError(p, f"declares {n} points of {point_size} bytes: too large")
        if data_kind == "binary":
            if len(body) < n * point_size:
                raise PointFileError(
                    p, f"truncated PCD: {n} points need {n * point_size} bytes, "
                    f"{len(body)} present")
            dt = np.dtype([(f"f{i}", d, (c,)) for i, (d, c) in enumerate(
                zip(dts, counts, strict=True))])
            table = np.frombuffer(body, dtype=dt, count=n)
            xyz = np.stack([table[f"f{fields.index(a)}"][:, 0].astype(np.float64)
                            for a in "xyz"], axis=1)
        else:
            buf = _decompress(p, body, n * point_size)
            xyz = np.empty((n, 3))
            offset = 0
            for i, (d, c) in enumerate(zip(dts, counts, strict=True)):
                if fields[i] in ("x", "y", "z"):
                    col = np.frombuffer(buf, dtype=d, count=n * c, offset=offset)
                    xyz[:, "xyz".index(fields[i])] = col.reshape(n, c)[:, 0]
                offset += d.itemsize * c * n
    keep = np.isfinite(xyz).all(axis=1)
    if n and not keep.any():
        raise PointFileError(p, f"none of the {n} points has finite x, y, z")
    return Geometry(np.ascontiguousarray(xyz[keep]), None)


def _parse_header(raw: bytes, p: Path):
    vals: dict[str, list[str]] = {}
    at = 0
    while True:
        nl = raw.find(b"\n", at)
        line_b = raw[at:] if nl < 0 else raw[at:nl]
        at = len(raw) if nl < 0 else nl + 1
        try:
            line = line_b.decode("ascii").split("#", 1)[0].strip()
        except UnicodeDecodeError:
            raise PointFileError(p, "not a PCD file (non-ASCII header)") from None
        if line:
            key, *rest = line.split()
            if key == "DATA":
                kind = rest[0].lower() if rest else ""
                break
            if key not in _KEYS:
                raise PointFileError(p, f"not a PCD file (unknown header line {line[:40]!r})")
            vals[key] = rest
        if nl < 0:
            raise PointFileError(p, "not a PCD file (no DATA line ends the header)")
    if kind not in ("ascii", "binary", "binary_compressed"):
        raise PointFileError(p, f"unsupported PCD DATA {kind[:30]!r}")
    fields = vals.get("FIELDS")
    if not fields:
        raise PointFileError(p, "PCD header has no FIELDS line")
    missing = [a for a in "xyz" if a not in fields]
    if missing:
        raise PointFileError(p, f"PCD file has no field(s) {', '.join(missing)}")
    try:
        sizes = [int(v) for v in vals.get("SIZE", ["4"] * len(fields))]
        types = [t.upper() for t in vals.get("TYPE", ["F"] * len(fields))]
        counts = [int(v) for v in vals.get("COUNT", ["1"] * len(fields))]
        width, height = int(vals["WIDTH"][0]), int(vals.get("HEIGHT", ["1"])[0])
        n = int(vals["POINTS"][0]) if "POINTS" in vals else width * height
    except (KeyError, IndexError, ValueError):
        raise PointFileError(p, "malformed PCD header (SIZE/COUNT/WIDTH/HEIGHT/POINTS)") from None
    k = len(fields)
    if len(sizes) != k or len(types) != k or len(counts) != k:
        raise PointFileError(p, "PCD header: FIELDS, SIZE, TYPE and COUNT differ in length")
    ok = {"F": (4, 8), "I": (1, 2, 4, 8), "U": (1, 2, 4, 8)}
    if any(t not in ok or s not in ok[t] for t, s in zip(types, sizes, strict=True)):
        raise PointFileError(p, f"PCD header: unsupported TYPE/SIZE {types}/{sizes}")
    if any(c < 1 or c > 1 << 16 for c in counts) or n < 0 or width < 0 or height < 0:
        raise PointFileError(p, "PCD header: counts must be positive")
    for a in "xyz":
        if counts[fields.index(a)] != 1:
            raise PointFileError(p, f"PCD field {a} must have COUNT 1")
    return (fields, sizes, types, counts, n), kind, raw[at:]


def _decompress(p: Path, body: bytes, expected: int) -> bytes:
    if len(body) < 8:
        raise PointFileError(p, "truncated compressed PCD (no size header)")
    csize, usize = (int(v) for v in np.frombuffer(body, "<u4", 2))
    if usize != expected:
        raise PointFileError(
            p, f"compressed PCD: {usize} bytes uncompressed, the header implies {expected}")
    if len(body) < 8 + csize:
        raise PointFileError(p, "truncated compressed PCD data")
    try:
        return lzf_decompress(body[8 : 8 + csize], usize)
    except ValueError as e:
        raise PointFileError(p, f"corrupt compressed PCD data ({e})") from None


def lzf_decompress(data: bytes, size: int) -> bytes:
    """Decode LZF (the liblzf format PCL uses) into exactly ``size`` bytes.

    A stream is a sequence of tokens. Control byte ``c < 32``: copy the next ``c + 1`` bytes.
    Otherwise a back-reference: length ``(c >> 5) + 2`` (``c >> 5 == 7``: add the next byte),
    distance ``((c & 31) << 8) + next byte + 1`` back into the output; overlapping copies repeat
    the pattern, as a byte-by-byte copy would.

    Raises:
        ValueError: the stream runs short, points before the start, or overflows ``size``.
    """
    src, out = memoryview(bytes(data)), bytearray(size)
    ip = op = 0
    n_in = len(src)
    while ip < n_in:
        ctrl = src[ip]
        ip += 1
        if ctrl < 32:
            n = ctrl + 1
            if ip + n > n_in or op + n > size:
                raise ValueError("literal run past the end")
            out[op : op + n] = src[ip : ip + n]
            ip, op = ip + n, op + n
            continue
        length = ctrl >> 5
        if length == 7:
            if ip >= n_in:
                raise ValueError("stream ends inside a back-reference")
            length += src[ip]
            ip += 1
        if ip >= n_in:
            raise ValueError("stream ends inside a back-reference")
        dist = ((ctrl & 31) << 8) + src[ip] + 1
        ip += 1
        length += 2
        ref = op - dist
        if ref < 0 or op + length > size:
            raise ValueError("back-reference outside the output")
        if dist >= length:
            out[op : op + length] = out[ref : ref + length]
        else:
            pattern = bytes(out[ref:op])
            out[op : op + length] = (pattern * (length // dist + 1))[:length]
        op += length
    if op != size:
        raise ValueError(f"decoded {op} bytes, expected {size}")
    return bytes(out)
