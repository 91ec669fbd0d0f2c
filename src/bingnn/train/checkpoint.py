"""Training checkpoints: atomic to write, safe to read.

A checkpoint is a plain dictionary of tensors, numbers, strings, lists and dictionaries (model,
optimizer and scheduler ``state_dict``\\ s, RNG states, the epoch, the JSON-able config). It is
written with :func:`torch.save` through :func:`bingnn.utils.atomic.atomic_save`, so a crash
mid-write leaves the previous checkpoint intact, and it is read with
``torch.load(weights_only=True)`` only, so loading a checkpoint never executes code.

Example::

    save_checkpoint("run/checkpoint.pt", {"model": model.state_dict(), "epoch": 3,
                                          "rng": rng_state()})
    state = load_checkpoint("run/checkpoint.pt")
    model.load_state_dict(state["model"])
    set_rng_state(state["rng"])
"""

from __future__ import annotations

import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bingnn.utils.atomic import atomic_save
from bingnn.utils.file_kind import sniff

FORMAT = "bingnn-checkpoint"
VERSION = 1

__all__ = [
    "CheckpointError",
    "FORMAT",
    "load_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be used (corrupt, truncated, foreign or unsafe)."""


_WHAT = "a bingnn checkpoint (final.pt, best.pt or checkpoint.pt written by training)"

#: What to do with files that users commonly give in a checkpoint's place.
_ADVICE = {
    "bgnn": "; run an exported model with `bingnn infer MODEL.bgnn FILE...`",
    "npy": "; point clouds go to `bingnn infer MODEL.bgnn FILE...`",
    "hdf5": "; point clouds go to `bingnn infer MODEL.bgnn FILE...`",
    "ply": "; point clouds go to `bingnn infer MODEL.bgnn FILE...`",
    "off": "; point clouds go to `bingnn infer MODEL.bgnn FILE...`",
}


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically.

    Args:
        path: destination file; its folder is created if needed.
        state: a dictionary with string keys whose values ``torch.load(weights_only=True)`` can
            read back (tensors, numbers, strings, ``None``, lists, tuples, dictionaries).

    A ``"format"``/``"format_version"`` tag is added so that :func:`load_checkpoint` can tell a
    bingnn checkpoint from any other pickle.
    """
    if not isinstance(state, dict):
        raise TypeError(f"checkpoint state must be a dict, got {type(state).__name__}")
    payload = dict(state)
    payload["format"] = FORMAT
    payload["format_version"] = VERSION
    atomic_save(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Only ``torch.load(weights_only=True)`` is used: a file that needs arbitrary Python objects
    is refused rather than executed.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is empty, truncated, corrupt, unsafe, or not a bingnn
            checkpoint.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    if p.is_dir():
        raise CheckpointError(
            f"{p} is a folder, expected a checkpoint file (such as {p / 'final.pt'})"
        )
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {p} is empty (0 bytes); delete it and re-run")
    kind = sniff(p)
    if kind.name not in ("torch", "pickle", "damaged_zip", "unknown"):
        raise CheckpointError(f"{p} is {kind.description}, not {_WHAT}{_ADVICE.get(kind.name, '')}")
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # PyTorch's message advises weights_only=False, i.e. running code from the file: say
        # what was found instead.
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        what = (f"holds a {found.group(1)} object" if found
                else "cannot be read as tensors and plain data")
        raise CheckpointError(
            f"{p} is not {_WHAT}: it {what}, and bingnn loads nothing else (anything else "
            "could run code from the file)"
        ) from e
    except Exception as e:  # noqa: BLE001 - torch raises many types for damaged files
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(
            f"checkpoint {p} is corrupt or truncated ({first}); delete it and re-run"
        ) from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a bingnn checkpoint (no {FORMAT!r} tag)")
    if obj.get("format_version", 0) > VERSION:
        raise CheckpointError(
            f"checkpoint {p} has format version {obj['format_version']}, newer than this "
            f"bingnn understands ({VERSION}); upgrade bingnn"
        )
    return obj


def rng_state() -> dict[str, Any]:
    """Snapshot of the Python, numpy and torch (CPU and CUDA) random generators, in types that
    ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state`."""
    py = state["python"]
    # torch.load returns lists where tuples were saved; random.setstate wants tuples.
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        (
            n["name"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda = [s.cpu() for s in state["cuda"]]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
