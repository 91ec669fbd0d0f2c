"""The packed model file (``.bgnn``): safetensors arrays + JSON metadata, read without PyTorch.

Layout. One `safetensors <https://github.com/huggingface/safetensors>`_ file. Its header's
``__metadata__`` (string -> string) holds:

* ``format``: ``"bingnn-model"``;
* ``format_version``: ``"MAJOR.MINOR"`` (this reader: :data:`FORMAT_VERSION`). A file with a
  newer *major* version is refused with a message to upgrade bingnn; newer minor versions only
  add optional content and are read;
* ``checksum``: ``"sha256:<hex>"`` over every array (name, dtype, shape, bytes, in name order),
  so a corrupted or truncated payload is detected before use;
* ``model``: the JSON model description (architecture, variant, ``k``, class names, input
  spec, widths, ...).

Arrays are plain numeric tensors (packed ``uint64`` weights, ``int32``/``float32`` thresholds,
the float classifier head). Reading parses JSON and copies bytes: it never executes code from
the file. Every array's dtype and shape is checked against what the metadata implies before the
engine uses it (:func:`bingnn.engine.model.expected_arrays`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "bingnn-model"
FORMAT_VERSION = "1.0"

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ModelFileError",
    "checksum",
    "read_model_file",
    "write_model_file",
]


class ModelFileError(ValueError):
    """A model file exists but cannot be used (corrupt, truncated, foreign or too new)."""


def checksum(arrays: dict[str, np.ndarray]) -> str:
    """``"sha256:<hex>"`` of the arrays: name, dtype, shape and bytes, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(b"\0" + a.dtype.str.encode() + b"\0" + repr(tuple(a.shape)).encode() + b"\0")
        h.update(a.tobytes())
    return "sha256:" + h.hexdigest()


def _parse_version(text: str) -> tuple[int, int]:
    try:
        major, minor = (int(p) for p in str(text).split("."))
    except ValueError as e:
        raise ModelFileError(f"invalid format_version {text!r} in model file") from e
    return major, minor


def write_model_file(
    path: str | os.PathLike, model: dict[str, Any], arrays: dict[str, np.ndarray]
) -> None:
    """Write ``arrays`` and the JSON description ``model`` to ``path`` atomically."""
    from safetensors.numpy import save_file

    from bingnn.utils.atomic import atomic_save

    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "checksum": checksum(arrays),
        "model": json.dumps(model, sort_keys=True),
    }
    atomic_save(path, lambda tmp: save_file(arrays, tmp, metadata=meta))


def read_model_file(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a model file.

    Returns:
        ``(model, arrays)``: the JSON model description and the arrays by name.

    Raises:
        FileNotFoundError: no such file.
        ModelFileError: not a bingnn model file, truncated or corrupt (checksum mismatch), or
            written by a newer bingnn (newer major format version).
    """
    from safetensors import safe_open

    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a folder, expected a model file (.bgnn)")
    if not p.is_file():
        raise FileNotFoundError(f"model file not found: {p}")
    size = p.stat().st_size
    if size < 8:
        raise ModelFileError(f"{p} is not a bingnn model file ({size} bytes: empty or truncated)")
    try:
        with safe_open(str(p), framework="numpy") as f:
            meta = f.metadata() or {}
            names = list(f.keys())
            arrays = {name: f.get_tensor(name) for name in names}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelFileError(
            f"{p} is not a readable bingnn model file (corrupt or truncated: {first}); "
            "re-export it with `bingnn export`"
        ) from e
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{p} is not a bingnn model file (no {FORMAT!r} tag)")
    major, _ = _parse_version(meta.get("format_version", ""))
    supported, _ = _parse_version(FORMAT_VERSION)
    if major > supported:
        raise ModelFileError(
            f"{p} has model format version {meta['format_version']}, newer than this bingnn "
            f"reads ({FORMAT_VERSION}); upgrade bingnn (pip install -U bingnn)"
        )
    if checksum(arrays) != meta.get("checksum"):
        raise ModelFileError(
            f"{p} is corrupt: its arrays do not match the stored checksum; re-export the model"
        )
    try:
        model = json.loads(meta["model"])
    except (KeyError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{p} has a missing or invalid model description: {e}") from e
    if not isinstance(model, dict):
        raise ModelFileError(f"{p}: the model description must be a JSON object")
    return model, arrays
