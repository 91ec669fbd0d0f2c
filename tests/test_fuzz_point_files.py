"""Fuzzing every point/mesh file reader (issue 11): truncation, byte flips, inserted garbage,
random bytes and huge declared counts. Zero crashes, zero hangs: every input is either read
into finite float32 clouds or refused with a one-line ``ValueError`` that names the file.

The default run is deterministic (``derandomize``) and short. A longer, randomised run on
demand::

    BINGNN_FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz_point_files.py -p no:cacheprovider
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bingnn.data.point_files import read_point_clouds

EXAMPLES = int(os.environ.get("BINGNN_FUZZ_EXAMPLES", "0")) or None
FUZZ = settings(
    max_examples=EXAMPLES or 40,
    derandomize=EXAMPLES is None,
    # A hang would blow this by orders of magnitude; normal examples take milliseconds.
    deadline=20_000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)

RNG = np.random.default_rng(7)
V = RNG.normal(size=(12, 3))
TRIS = np.array([[0, 1, 2], [2, 3, 4], [4, 5, 6], [6, 7, 8], [8, 9, 10], [10, 11, 0]])


def _ply(fmt: str) -> bytes:
    head = (f"ply\nformat {fmt} 1.0\nelement vertex {len(V)}\nproperty float x\n"
            "property float y\nproperty float z\nproperty uchar red\n"
            f"element face {len(TRIS)}\nproperty list uchar int vertex_indices\nend_header\n")
    if fmt == "ascii":
        body = "".join(f"{x} {y} {z} 7\n" for x, y, z in V)
        body += "".join(f"3 {a} {b} {c}\n" for a, b, c in TRIS)
        return (head + body).encode()
    e = "<" if fmt == "binary_little_endian" else ">"
    rec = np.empty(len(V), [("x", e + "f4"), ("y", e + "f4"), ("z", e + "f4"), ("r", "u1")])
    rec["x"], rec["y"], rec["z"], rec["r"] = *V.T, 7
    faces = b"".join(bytes([3]) + np.array(t, e + "i4").tobytes() for t in TRIS)
    return head.encode() + rec.tobytes() + faces


def _pcd(kind: str) -> bytes:
    head = ("VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
            f"WIDTH {len(V)}\nHEIGHT 1\nPOINTS {len(V)}\nDATA {kind}\n").encode()
    v = V.astype("<f4")
    if kind == "ascii":
        return head + "".join(f"{x} {y} {z}\n" for x, y, z in v).encode()
    if kind == "binary":
        return head + v.tobytes()
    soa = v.T.copy().tobytes()
    comp = b"".join(bytes([len(soa[i:i + 32]) - 1]) + soa[i:i + 32] for i in range(0, len(soa), 32))
    return head + np.array([len(comp), len(soa)], "<u4").tobytes() + comp


def _npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, V.astype(np.float32))
    return buf.getvalue()


def _h5(tmp: Path) -> bytes:
    p = tmp / "seed.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("data", data=V[None].astype(np.float32))
        f.create_dataset("label", data=np.zeros((1, 1), np.uint8))
    return p.read_bytes()


SEEDS: dict[str, bytes] = {
    "mesh.off": (f"OFF{len(V)} {len(TRIS)} 0\n" + "".join(f"{x} {y} {z}\n" for x, y, z in V)
                 + "".join(f"3 {a} {b} {c}\n" for a, b, c in TRIS)).encode(),
    "quads.off": b"OFF\n4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3 255 0 0\n",
    "mesh.obj": ("".join(f"v {x} {y} {z}\n" for x, y, z in V)
                 + "".join(f"f {a + 1}/1/1 {b + 1}//2 {c - 12}\n" for a, b, c in TRIS)).encode(),
    "ascii.ply": _ply("ascii"),
    "le.ply": _ply("binary_little_endian"),
    "be.ply": _ply("binary_big_endian"),
    "a.pcd": _pcd("ascii"),
    "b.pcd": _pcd("binary"),
    "c.pcd": _pcd("binary_compressed"),
    "p.xyz": ("x,y,z\n" + "".join(f"{x},{y},{z},1\n" for x, y, z in V)).encode(),
    "p.npy": _npy(),
}
HUGE = [b"999999999999", b"2147483647", b"4294967296", b"-1", b"18446744073709551617", b"0"]


def check(path: Path) -> None:
    """The contract: clouds that are float32 (N, 3), finite and non-empty, or a one-line
    ValueError naming the file."""
    try:
        clouds = read_point_clouds(path, mesh_points=32)
    except ValueError as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith(str(path)), msg
        return
    assert clouds
    for c in clouds:
        assert c.dtype == np.float32 and c.ndim == 2 and c.shape[1] == 3 and len(c) > 0
        assert np.isfinite(c).all()


def mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    n = len(seed)
    truncate = st.integers(0, n).map(lambda k: seed[:k])
    flips = st.lists(st.tuples(st.integers(0, max(n - 1, 0)), st.integers(0, 255)),
                     min_size=1, max_size=8).map(lambda fl: _flip(seed, fl))
    insert = st.tuples(st.integers(0, n), st.binary(min_size=1, max_size=64)).map(
        lambda t: seed[: t[0]] + t[1] + seed[t[0]:])
    huge = st.tuples(st.integers(0, 40), st.sampled_from(HUGE)).map(lambda t: _huge(seed, *t))
    return st.one_of(truncate, flips, insert, huge, st.binary(max_size=512))


def _flip(seed: bytes, fl) -> bytes:
    b = bytearray(seed)
    for i, v in fl:
        if b:
            b[i] = v
    return bytes(b)


def _huge(seed: bytes, which: int, value: bytes) -> bytes:
    """Replace the ``which``-th decimal number of the text header by ``value``."""
    head_end = seed.find(b"end_header")
    head_end = len(seed) if head_end < 0 else head_end
    nums = list(re.finditer(rb"\d+", seed[: min(head_end, 400)]))
    if not nums:
        return seed
    m = nums[which % len(nums)]
    return seed[: m.start()] + value + seed[m.end():]


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seeds_are_valid(tmp_path, name):
    (tmp_path / name).write_bytes(SEEDS[name])
    clouds = read_point_clouds(tmp_path / name, mesh_points=32)
    assert clouds and all(len(c) for c in clouds)


def test_found_by_fuzzing(tmp_path):
    # A NUL inside the .npy header dict: numpy's parser raised tokenize.TokenError.
    path = tmp_path / "p.npy"
    path.write_bytes(_flip(SEEDS["p.npy"], [(60, 0)]))
    with pytest.raises(ValueError, match=r"p\.npy: malformed \.npy header"):
        read_point_clouds(path)
    # A negative dimension: the reader asked the file for a negative number of bytes.
    path.write_bytes(_huge(SEEDS["p.npy"], 1, b"-1"))
    with pytest.raises(ValueError, match=r"p\.npy: malformed \.npy header \(shape"):
        read_point_clouds(path)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_fuzz_reader(tmp_path, name):
    path = tmp_path / name

    @FUZZ
    @given(data=mutations(SEEDS[name]))
    def run(data: bytes) -> None:
        path.write_bytes(data)
        check(path)

    run()


def test_fuzz_h5(tmp_path):
    seed = _h5(tmp_path)
    path = tmp_path / "f.h5"

    @settings(FUZZ, max_examples=(EXAMPLES or 25))
    @given(data=st.one_of(
        st.integers(0, len(seed)).map(lambda k: seed[:k]),
        st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)),
                 min_size=1, max_size=8).map(lambda fl: _flip(seed, fl)),
    ))
    def run(data: bytes) -> None:
        path.write_bytes(data)
        check(path)

    run()
