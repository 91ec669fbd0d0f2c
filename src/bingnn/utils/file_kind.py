"""Tell what a file is from its first bytes, so that a file given in the wrong place gets a
message naming what it is ("an exported engine model", "a numpy array") instead of a loader's
advice about its own format. Numpy-free and torch-free; reads at most a few kilobytes (or a
safetensors header of at most :data:`MAX_HEADER` bytes).

Example::

    kind = sniff("bf2.bgnn")
    kind.name          # "bgnn"
    kind.description   # "an exported engine model (.bgnn)"
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FileKind", "MAX_HEADER", "sniff"]

#: Largest safetensors header we parse to look for bingnn's model tag.
MAX_HEADER = 16 << 20

_MODEL_FORMAT = "bingnn-model"  # the tag `bingnn export` writes (bingnn.engine.format.FORMAT)


@dataclass(frozen=True)
class FileKind:
    """``name``: a short identifier (``"torch"``, ``"pickle"``, ``"bgnn"``, ``"safetensors"``,
    ``"npy"``, ``"npz"``, ``"hdf5"``, ``"ply"``, ``"off"``, ``"zip"``, ``"damaged_zip"``,
    ``"gzip"``, ``"text"``, ``"empty"``, ``"unknown"``); ``description``: the same in words,
    to follow "X is ..."."""

    name: str
    description: str


def sniff(path: str | os.PathLike) -> FileKind:
    """Identify the format of the regular file ``path`` by its content (not its extension).

    Raises:
        OSError: the file cannot be opened or read.
    """
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(4096)
        size = os.fstat(f.fileno()).st_size
        if not head:
            return FileKind("empty", "an empty file")
        if head.startswith(b"\x93NUMPY"):
            return FileKind("npy", "a numpy array file (.npy)")
        if head.startswith(b"\x89HDF\r\n\x1a\n"):
            return FileKind("hdf5", "an HDF5 file")
        if head.startswith(b"PK\x03\x04"):
            return _zip_kind(p)
        if head.startswith(b"\x1f\x8b"):
            return FileKind("gzip", "a gzip-compressed file")
        if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
            return FileKind("pickle", "a Python pickle")
        if head.startswith(b"ply\n") or head.startswith(b"ply\r\n"):
            return FileKind("ply", "a PLY point cloud / mesh")
        if head.startswith(b"OFF"):
            return FileKind("off", "an OFF mesh")
        kind = _safetensors_kind(f, head, size)
        if kind is not None:
            return kind
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as e:
            # a multi-byte character cut at the end of the 4 KiB is still text
            if e.start < len(head) - 4:
                return FileKind("unknown", "a file of unknown format")
        return FileKind("text", "a text file")
    return FileKind("unknown", "a file of unknown format")


def _zip_kind(p: Path) -> FileKind:
    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return FileKind("damaged_zip", "a damaged zip archive (a truncated PyTorch file?)")
    # torch.save writes <archive>/data.pkl (+ data/, version, byteorder)
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return FileKind("torch", "a PyTorch file")
    if names and all(n.endswith(".npy") for n in names):
        return FileKind("npz", "a numpy archive (.npz)")
    return FileKind("zip", "a zip archive")


def _safetensors_kind(f, head: bytes, size: int) -> FileKind | None:
    """A safetensors file: an 8-byte little-endian header length, then that many bytes of JSON."""
    if len(head) < 9 or head[8:9] != b"{":
        return None
    (n,) = struct.unpack("<Q", head[:8])
    if n < 2 or n > MAX_HEADER or 8 + n > size:
        return None
    f.seek(8)
    try:
        header = json.loads(f.read(n))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    meta = header.get("__metadata__")
    if isinstance(meta, dict) and meta.get("format") == _MODEL_FORMAT:
        return FileKind("bgnn", "an exported engine model (.bgnn)")
    return FileKind("safetensors", "a safetensors file")
