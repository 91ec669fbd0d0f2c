"""Arrays of clouds: NumPy ``.npy`` and HDF5 ``.h5``/``.hdf5`` (dataset ``data``).

Both hold one cloud ``(N, 3)`` or a stack ``(B, N, 3)`` of real numbers. The ``.npy`` reader
parses the header itself and checks the declared size against the file before reading, so a
text file or a pickle renamed ``.npy`` is named for what it is and a forged shape never
allocates. The HDF5 reader checks that ``data`` is a dataset (not a group) of a plausible size.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from .common import MAX_ARRAY_BYTES, PointFileError

__all__ = ["read_h5", "read_npy"]

_NPY_MAGIC = b"\x93NUMPY"

try:  # version 3.0 headers (UTF-8 field names) have no public reader
    from numpy.lib._format_impl import _read_array_header as _read_v3
except ImportError:  # pragma: no cover - numpy < 2
    _read_v3 = getattr(np.lib.format, "_read_array_header", None)


def read_npy(path: str | Path) -> np.ndarray:
    """The array of a ``.npy`` file (numeric, not pickled).

    Raises:
        PointFileError: what the file is instead (text, zip/.npz, pickle, other binary), a
            malformed or truncated file, or an array of objects/strings/records.
    """
    p = Path(path)
    fmt = np.lib.format
    with open(p, "rb") as f:
        magic = f.read(len(_NPY_MAGIC))
        if magic != _NPY_MAGIC:
            raise PointFileError(p, _what_instead(magic + f.read(506)))
        f.seek(0)
        try:
            version = fmt.read_magic(f)
            reader = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(
                version, _read_v3 if version == (3, 0) else None)
            if reader is None:
                raise ValueError(f"unknown format version {version[0]}.{version[1]}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. numpy's "created on Python 2" notice
                shape, fortran, dtype = (
                    reader(f, version) if reader is _read_v3 else reader(f)  # type: ignore
                )
        except PointFileError:
            raise
        except Exception as e:  # noqa: BLE001 - numpy's header parser raises many types
            raise PointFileError(p, f"malformed .npy header ({_short(e)})") from None
        if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biuf":
            raise PointFileError(
                p, f"holds an array of {dtype} (need real numbers, e.g. float32 x, y, z)"
            )
        if not isinstance(shape, tuple) or any(
            not isinstance(d, int) or d < 0 for d in shape
        ):
            raise PointFileError(p, f"malformed .npy header (shape {shape!r})")
        count = math.prod(shape)
        need = count * dtype.itemsize
        if need > MAX_ARRAY_BYTES:
            raise PointFileError(p, f"declares an array of shape {shape}: too large to read")
        data = f.read(need)
    if len(data) < need:
        raise PointFileError(
            p, f"truncated .npy: shape {shape} needs {need} bytes of data, {len(data)} present"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count)
    return arr.reshape(shape, order="F" if fortran else "C")


def _what_instead(head: bytes) -> str:
    if head.startswith(b"PK"):
        return "a zip archive (.npz?), not a .npy file; save one array with numpy.save"
    if head[:1] == b"\x80":
        return "a Python pickle, not a .npy file; bingnn never loads pickles"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file, not a .npy file; rename it .h5"
    if head.startswith(b"ply"):
        return "a PLY file, not a .npy file; rename it .ply"
    if not head:
        return "empty file, not a .npy file"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "not a NumPy .npy file (no \\x93NUMPY magic at its start)"
    if "OFF" in text[:5]:
        return "an OFF mesh, not a .npy file; rename it .off"
    return "a text file, not a NumPy .npy file; save points as text with extension .xyz or .txt"


def read_h5(path: str | Path) -> np.ndarray:
    """The dataset ``data`` of an HDF5 file.

    Raises:
        PointFileError: not HDF5, no ``data``, ``data`` a group or of a size the file cannot
            hold, or an unreadable dataset.
    """
    p = Path(path)
    try:
        import h5py  # lazy: the engine needs it only for HDF5 inputs
    except ImportError:  # pragma: no cover - h5py is a declared dependency
        raise PointFileError(p, "reading .h5 point clouds needs h5py: pip install h5py") from None
    try:
        f = h5py.File(p, "r")
    except Exception as e:  # noqa: BLE001 - h5py raises several types for foreign files
        raise PointFileError(p, f"not a readable HDF5 file ({_short(e)})") from None
    try:
        with f:
            try:
                keys = sorted(f.keys())
                node = f.get("data")
            except Exception as e:  # noqa: BLE001
                raise PointFileError(p, f"corrupt HDF5 file ({_short(e)})") from None
            if node is None:
                raise PointFileError(
                    p, f"HDF5 file has no dataset 'data' (found: {keys[:8]}); store the clouds "
                    "as a dataset named data with shape (B, N, 3)"
                )
            if not isinstance(node, h5py.Dataset):
                raise PointFileError(
                    p, f"'data' is an HDF5 {type(node).__name__.lower()}, not a dataset; store "
                    "the clouds as a dataset named data with shape (B, N, 3)"
                )
            return _read_dataset(p, node)
    except PointFileError:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. closing a corrupt file
        raise PointFileError(p, f"corrupt HDF5 file ({_short(e)})") from None


def _read_dataset(p: Path, ds) -> np.ndarray:
    dtype = ds.dtype
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biuf":
        raise PointFileError(p, f"dataset 'data' holds {dtype} (need real numbers)")
    nbytes = math.prod(ds.shape) * dtype.itemsize
    if nbytes > MAX_ARRAY_BYTES:
        raise PointFileError(p, f"dataset 'data' of shape {ds.shape} is too large to read")
    # A corrupt header may declare far more data than the file stores (unwritten chunks read
    # as zeros): refuse sizes beyond any plausible compression of what is stored.
    stored = ds.id.get_storage_size()
    if nbytes > 1024 * stored + (1 << 20):
        raise PointFileError(
            p, f"dataset 'data' declares {nbytes} bytes but the file stores {stored}; corrupt?"
        )
    try:
        return np.asarray(ds[()])
    except Exception as e:  # noqa: BLE001 - truncated or corrupt storage
        raise PointFileError(
            p, f"dataset 'data' cannot be read ({_short(e)}); truncated?"
        ) from None


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:160]
