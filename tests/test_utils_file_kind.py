"""File kinds are told apart by content, whatever the extension; garbage never raises."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bingnn.utils.file_kind import sniff


def _bgnn(p: Path) -> None:
    from bingnn.export import export
    from bingnn.models import BinDGCNN

    model = BinDGCNN(num_classes=3, variant="bf2", k=4, widths=(8, 8, 8, 16), emb_dims=16,
                     mlp=(8, 8)).eval()
    export(model, p.with_suffix(".bgnn")).rename(p)


def _safetensors(p: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(3, np.float32)}, str(p), metadata={"format": "other"})


def _h5(p: Path) -> None:
    import h5py

    with h5py.File(p, "w") as f:
        f["data"] = np.zeros((1, 4, 3), np.float32)


def _torch_truncated(p: Path) -> None:
    torch.save({"w": torch.zeros(100)}, p)
    p.write_bytes(p.read_bytes()[:300])


MAKERS = {
    "bgnn": _bgnn,
    "safetensors": _safetensors,
    "npy": lambda p: np.save(open(p, "wb"), np.zeros((4, 3))),
    "npz": lambda p: np.savez(open(p, "wb"), a=np.zeros(3), b=np.ones(2)),
    "hdf5": _h5,
    "ply": lambda p: p.write_text("ply\nformat ascii 1.0\nelement vertex 0\nend_header\n"),
    "off": lambda p: p.write_text("OFF\n0 0 0\n"),
    "torch": lambda p: torch.save({"w": torch.zeros(2)}, p),
    "damaged_zip": _torch_truncated,
    "pickle": lambda p: p.write_bytes(pickle.dumps({"a": 1}, protocol=4)),
    "gzip": lambda p: p.write_bytes(gzip.compress(b"hello")),
    # 3601 ASCII bytes then 2-byte characters: the 4 KiB that sniff reads end mid-character
    "text": lambda p: p.write_text("x y z\n" * 600 + "a" + "é" * 2000, encoding="utf-8"),
    "empty": lambda p: p.write_bytes(b""),
    "unknown": lambda p: p.write_bytes(bytes(range(256)) * 4),
}


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_each_kind_is_recognised_whatever_the_extension(tmp_path: Path, kind: str) -> None:
    p = tmp_path / "file.pt"  # the extension says nothing
    MAKERS[kind](p)
    got = sniff(p)
    assert got.name == kind
    assert got.description.startswith(("a ", "an "))


def test_legacy_torch_files_are_pickles(tmp_path: Path) -> None:
    p = tmp_path / "old.pt"
    torch.save({"w": torch.zeros(2)}, p, _use_new_zipfile_serialization=False)
    assert sniff(p).name == "pickle"


@pytest.mark.parametrize("n", [0, 1, 2**63, 50])
def test_safetensors_lookalikes_with_bad_header_lengths(tmp_path: Path, n: int) -> None:
    p = tmp_path / "x"
    p.write_bytes(struct.pack("<Q", n) + b'{"a": 1}' + b"\x00" * 10)
    assert sniff(p).name not in ("bgnn", "safetensors")


PREFIXES = [b"", b"PK\x03\x04", b"\x93NUMPY", b"\x80\x04", b"ply\n", struct.pack("<Q", 16) + b"{"]


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=600), st.sampled_from(PREFIXES))
def test_any_bytes_get_a_kind_without_raising(tmp_path: Path, data: bytes, prefix: bytes) -> None:
    p = tmp_path / "fuzz"
    p.write_bytes(prefix + data)
    kind = sniff(p)
    assert kind.name and kind.description
