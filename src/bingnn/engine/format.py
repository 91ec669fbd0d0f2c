"""The packed model file (``.bgnn``): safetensors arrays + a JSON program, read without PyTorch.

Layout (format 2). One `safetensors <https://github.com/huggingface/safetensors>`_ file. Its
header's ``__metadata__`` (string -> string) holds exactly four keys:

* ``format``: ``"bingnn-model"``;
* ``format_version``: ``"MAJOR.MINOR"`` (this reader: :data:`FORMAT_VERSION`). A newer *major*
  version is refused with a message to upgrade bingnn; a newer *minor* version only adds
  optional description fields, which this reader ignores;
* ``model``: the JSON model description: the task, the input, the class names and the model as
  a list of typed layers (:mod:`bingnn.engine.layers`), each with its named arrays;
* ``checksum``: ``"sha256:<hex>"`` over the format tag, the version, the exact bytes of the
  ``model`` string and every array (name, dtype, shape, bytes, in name order)
  (:func:`checksum`). Any change to the description (``"k": 5`` -> ``6``, a class name, a
  variant) or to an array is refused before the model is built.

Format 1 files (``format_version`` 1.x: one architecture, a flat description whose checksum
covered the arrays only) are still read: the arrays are verified, the description is checked
strictly and converted to the layered form (:mod:`bingnn.engine.legacy`), and a warning says
that its description is not protected; re-export to get a format 2 file.

Reading parses JSON and copies bytes: it never executes code from the file. Every layer's
parameters, every array's dtype, shape and values (finite floats, except the +-inf that
disable one side of a threshold; 0/1 flags; zero padding bits) are checked against the
description before the engine uses them (:func:`bingnn.engine.layers.build_program`).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bingnn.engine.errors import LegacyFormatWarning, ModelFileError

FORMAT = "bingnn-model"
FORMAT_VERSION = "2.0"
#: Metadata keys of a format 2 file; any other key is refused (it would not be checksummed).
META_KEYS = frozenset({"format", "format_version", "model", "checksum"})
#: Largest header the reader accepts (the safetensors limit): a corrupt length cannot make it
#: allocate more.
MAX_HEADER_BYTES = 100_000_000

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LegacyFormatWarning",
    "ModelFileError",
    "checksum",
    "parse_model_bytes",
    "read_model_file",
    "serialize_model",
    "write_model_file",
]


def checksum(arrays: dict[str, np.ndarray], description: str | None = None,
             version: str | None = None) -> str:
    """``"sha256:<hex>"`` of the model.

    Format 2 (``description`` given): the format tag, ``version``, the description string and
    the arrays. Format 1 (``description=None``): the arrays only. Arrays enter as name, dtype,
    shape and bytes, in sorted name order.
    """
    h = hashlib.sha256()
    if description is not None:
        for part in (FORMAT, str(version), description):
            data = part.encode("utf-8", "surrogatepass")
            h.update(len(data).to_bytes(8, "little") + data)
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode("utf-8", "surrogatepass"))
        h.update(b"\0" + a.dtype.str.encode() + b"\0" + repr(tuple(a.shape)).encode() + b"\0")
        h.update(a.tobytes())
    return "sha256:" + h.hexdigest()


def _parse_version(text: Any, where: str) -> tuple[int, int]:
    try:
        major, minor = (int(p) for p in str(text).split("."))
        if major < 0 or minor < 0:
            raise ValueError
    except ValueError as e:
        raise ModelFileError(f"{where}: invalid format_version {text!r} in model file") from e
    return major, minor


def serialize_model(model: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of a format 2 model file holding ``model`` and ``arrays``."""
    from safetensors.numpy import save

    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    text = json.dumps(model, sort_keys=True, separators=(",", ":"), allow_nan=False)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": text,
        "checksum": checksum(arrays, text, FORMAT_VERSION),
    }
    return save(arrays, metadata=meta)


def write_model_file(
    path: str | os.PathLike, model: dict[str, Any], arrays: dict[str, np.ndarray],
    overwrite: bool = True,
) -> None:
    """Write ``arrays`` and the JSON description ``model`` to ``path`` atomically.

    ``overwrite=False``: raise ``FileExistsError`` (and leave the existing file alone) if
    ``path`` exists when the finished file is moved into place."""
    from bingnn.utils.atomic import atomic_write_bytes

    atomic_write_bytes(path, serialize_model(model, arrays), overwrite=overwrite)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def parse_model_bytes(data: bytes, where: str = "model") -> tuple[dict[str, Any],
                                                                  dict[str, np.ndarray]]:
    """Parse and verify the bytes of a model file (see :func:`read_model_file`).

    Returns ``(description, arrays)``; a format 1 file comes back converted to format 2.
    """
    from safetensors.numpy import load

    size = len(data)
    if size < 8:
        raise ModelFileError(f"{where} is not a bingnn model file ({size} bytes: empty or "
                             "truncated)")
    n = int.from_bytes(data[:8], "little")
    if n < 2 or n > min(size - 8, MAX_HEADER_BYTES):
        raise ModelFileError(f"{where} is not a readable bingnn model file (corrupt or "
                             f"truncated: header length {n} for a {size}-byte file); re-export "
                             "it with `bingnn export`")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
        arrays = load(bytes(data))
    except Exception as e:  # noqa: BLE001
        # safetensors raises its own error type; json a ValueError or a RecursionError.
        raise ModelFileError(f"{where} is not a readable bingnn model file (corrupt or "
                             f"truncated: {_first_line(e)}); re-export it with "
                             "`bingnn export`") from e
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{where} is not a bingnn model file (no {FORMAT!r} tag)")
    version = meta.get("format_version", "")
    major, _ = _parse_version(version, where)
    supported, _ = _parse_version(FORMAT_VERSION, where)
    if major > supported:
        raise ModelFileError(
            f"{where} has model format version {version}, newer than this bingnn reads "
            f"({FORMAT_VERSION}) (or the file is corrupt); upgrade bingnn (pip install -U "
            "bingnn) or re-export the model"
        )
    if major == 1:
        return _read_v1(meta, arrays, where)
    if major != supported:
        raise ModelFileError(f"{where}: model format version {version} is not readable by "
                             "this bingnn; re-export the model")
    extra = sorted(set(meta) - META_KEYS)
    if extra:
        raise ModelFileError(f"{where} is corrupt: unexpected metadata {extra[:3]} (only "
                             f"{sorted(META_KEYS)} are allowed); re-export the model")
    text = meta.get("model")
    if not isinstance(text, str) or checksum(arrays, text, version) != meta.get("checksum"):
        raise ModelFileError(
            f"{where} is corrupt: its description or arrays do not match the stored checksum; "
            "re-export the model"
        )
    return _parse_description(text, where), arrays


def _parse_description(text: str, where: str) -> dict[str, Any]:
    try:
        model = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise ModelFileError(f"{where} has an invalid model description: "
                             f"{_first_line(e)}") from e
    if not isinstance(model, dict):
        raise ModelFileError(f"{where}: the model description must be a JSON object")
    return model


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a model description")


def _read_v1(meta: dict[str, Any], arrays: dict[str, np.ndarray],
             where: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from bingnn.engine.legacy import convert_v1

    if checksum(arrays) != meta.get("checksum"):
        raise ModelFileError(
            f"{where} is corrupt: its arrays do not match the stored checksum; re-export the model"
        )
    text = meta.get("model")
    if not isinstance(text, str):
        raise ModelFileError(f"{where} has a missing model description")
    desc, arrays = convert_v1(_parse_description(text, where), arrays, where)
    warnings.warn(
        f"{where} is a format {meta.get('format_version')} model file: its description is not "
        "covered by the checksum, so a corrupted description cannot be detected; re-export the "
        "model with `bingnn export` to get a format 2 file",
        LegacyFormatWarning,
        stacklevel=3,
    )
    return desc, arrays


def read_model_file(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a model file.

    Returns:
        ``(model, arrays)``: the JSON model description (format 2, converted from format 1 if
        needed) and the arrays by name. The description's layers are not checked here; see
        :func:`bingnn.engine.layers.build_program`.

    Raises:
        FileNotFoundError: no such file.
        IsADirectoryError: ``path`` is a folder.
        ModelFileError: not a bingnn model file, truncated or corrupt (checksum mismatch), or
            written by a newer bingnn (newer major format version).
    """
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a folder, expected a model file (.bgnn)")
    if not p.is_file():
        raise FileNotFoundError(f"model file not found: {p}")
    return parse_model_bytes(p.read_bytes(), str(p))
