"""Point-file readers: round trips for every format, and clear errors on bad files."""

from __future__ import annotations

import re
import subprocess
import sys

import h5py
import numpy as np
import pytest

from bingnn.data.point_files import read_geometry, read_point_clouds

RNG = np.random.default_rng(1234)


def cloud(n: int = 37) -> np.ndarray:
    return RNG.uniform(-1, 1, size=(n, 3)).astype(np.float32)


def expect_error(path, match: str) -> None:
    """``read_point_clouds(path)`` raises ValueError whose message, with the folder (named after
    the test) removed, matches ``match``."""
    with pytest.raises(ValueError) as e:
        read_point_clouds(path)
    msg = str(e.value).replace(str(path.parent), "<dir>")
    assert re.search(match, msg), msg


def ply_header(fmt: str, n: int, props: list[str], extra: str = "") -> bytes:
    lines = ["ply", f"format {fmt} 1.0", "comment made by the test", f"element vertex {n}"]
    lines += [f"property {p}" for p in props]
    lines += [extra] if extra else []
    lines += ["end_header"]
    return ("\n".join(lines) + "\n").encode()


# ---- npy / h5 ------------------------------------------------------------------------------


def test_npy_single_and_stack(tmp_path):
    a = cloud()
    np.save(tmp_path / "one.npy", a)
    (got,) = read_point_clouds(tmp_path / "one.npy")
    assert got.dtype == np.float32 and np.array_equal(got, a)

    stack = RNG.standard_normal((4, 10, 3))  # float64 in, float32 out
    np.save(tmp_path / "many.npy", stack)
    got = read_point_clouds(tmp_path / "many.npy")
    assert len(got) == 4
    for g, s in zip(got, stack, strict=True):
        np.testing.assert_array_equal(g, s.astype(np.float32))


@pytest.mark.parametrize("ext", [".h5", ".hdf5"])
def test_h5_round_trip(tmp_path, ext):
    stack = RNG.standard_normal((3, 8, 3)).astype(np.float32)
    with h5py.File(tmp_path / f"x{ext}", "w") as f:
        f["data"] = stack
    got = read_point_clouds(tmp_path / f"x{ext}")
    np.testing.assert_array_equal(np.stack(got), stack)
    with h5py.File(tmp_path / "single.h5", "w") as f:
        f["data"] = stack[0]
    (g,) = read_point_clouds(tmp_path / "single.h5")
    np.testing.assert_array_equal(g, stack[0])


def test_h5_without_data(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["points"] = np.zeros((2, 4, 3))
    expect_error(tmp_path / "x.h5", "no dataset 'data'")


def test_h5_not_hdf5(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"definitely not hdf5")
    expect_error(tmp_path / "x.h5", "HDF5")


# ---- PLY -----------------------------------------------------------------------------------


def test_ply_ascii_with_extra_properties_and_faces(tmp_path):
    a = cloud(5).astype(np.float64)
    body = "".join(f"{r} {x} {y} {z} 0.5\n" for (x, y, z), r in zip(a, range(5), strict=True))
    body += "3 0 1 2\n3 1 2 3\n"
    hdr = ply_header(
        "ascii",
        5,
        ["int id", "double x", "double y", "double z", "float nx"],
        "element face 2\nproperty list uchar int vertex_indices",
    )
    (tmp_path / "a.ply").write_bytes(hdr + body.encode())
    (g,) = read_point_clouds(tmp_path / "a.ply", mesh_points=None)
    np.testing.assert_allclose(g, a.astype(np.float32))
    (geo,) = read_geometry(tmp_path / "a.ply")
    np.testing.assert_array_equal(geo.triangles, [[0, 1, 2], [1, 2, 3]])


@pytest.mark.parametrize("endian,fmt", [("<", "binary_little_endian"), (">", "binary_big_endian")])
@pytest.mark.parametrize(
    "ctype,np_type",
    [("float", "f4"), ("double", "f8"), ("int", "i4"), ("short", "i2"), ("float32", "f4")],
)
def test_ply_binary_round_trip(tmp_path, endian, fmt, ctype, np_type):
    n = 23
    vals = (RNG.uniform(-50, 50, size=(n, 3))).astype(np_type)
    colour = RNG.integers(0, 255, size=(n, 3)).astype("u1")
    # Properties deliberately out of order (z before x) and interleaved with colours.
    dt = np.dtype(
        [
            ("red", "u1"),
            ("z", endian + np_type),
            ("x", endian + np_type),
            ("green", "u1"),
            ("y", endian + np_type),
            ("blue", "u1"),
        ]
    )
    rec = np.empty(n, dt)
    rec["x"], rec["y"], rec["z"] = vals[:, 0], vals[:, 1], vals[:, 2]
    rec["red"], rec["green"], rec["blue"] = colour.T
    props = ["uchar red", f"{ctype} z", f"{ctype} x", "uchar green", f"{ctype} y", "uchar blue"]
    faces = np.array([3, 0, 1, 2], dtype=endian + "i4").tobytes()
    raw = ply_header(fmt, n, props, "element face 1\nproperty list int int vertex_indices")
    (tmp_path / "b.ply").write_bytes(raw + rec.tobytes() + faces)
    (g,) = read_point_clouds(tmp_path / "b.ply", mesh_points=None)
    np.testing.assert_array_equal(g, vals.astype(np.float32))
    (geo,) = read_geometry(tmp_path / "b.ply")
    np.testing.assert_array_equal(geo.triangles, [[0, 1, 2]])


def test_ply_binary_vertex_after_list_element(tmp_path):
    # An element with a list property before the vertices: has to be walked item by item.
    a = cloud(4)
    hdr = (
        "ply\nformat binary_little_endian 1.0\nelement meta 2\n"
        "property list uchar short vals\nproperty float w\n"
        "element vertex 4\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    )
    meta = (
        np.array([2], "u1").tobytes()
        + np.array([7, 8], "<i2").tobytes()
        + np.array([1.5], "<f4").tobytes()
        + np.array([0], "u1").tobytes()
        + np.array([2.5], "<f4").tobytes()
    )
    (tmp_path / "c.ply").write_bytes(hdr.encode() + meta + a.astype("<f4").tobytes())
    (g,) = read_point_clouds(tmp_path / "c.ply")
    np.testing.assert_array_equal(g, a)


def test_ply_truncated_binary(tmp_path):
    a = cloud(10)
    raw = ply_header("binary_little_endian", 10, ["float x", "float y", "float z"])
    (tmp_path / "t.ply").write_bytes(raw + a.tobytes()[:-5])
    expect_error(tmp_path / "t.ply", "truncated")


def test_ply_truncated_ascii(tmp_path):
    raw = ply_header("ascii", 3, ["float x", "float y", "float z"]) + b"0 0 0\n1 1 1\n"
    (tmp_path / "t.ply").write_bytes(raw)
    expect_error(tmp_path / "t.ply", "truncated")


def test_ply_ascii_wrong_value_count(tmp_path):
    raw = ply_header("ascii", 2, ["float x", "float y", "float z"]) + b"0 0\n1 1 1 1\n"
    (tmp_path / "t.ply").write_bytes(raw)
    expect_error(tmp_path / "t.ply", "malformed")


@pytest.mark.parametrize(
    "raw,match",
    [
        (b"not a ply\n", "not a PLY"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n0\n", "lacks"),
        (b"ply\nformat ascii 1.0\nelement face 0\nend_header\n", "no 'vertex'"),
        (b"ply\nformat utf8 1.0\nelement vertex 0\nend_header\n", "format"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float128 x\nend_header\n", "header"),
        (
            b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
            b"property float z\nend_header\n",
            "empty",
        ),
    ],
)
def test_ply_bad_headers(tmp_path, raw, match):
    (tmp_path / "bad.ply").write_bytes(raw)
    expect_error(tmp_path / "bad.ply", match)


# ---- OFF -----------------------------------------------------------------------------------


def off_text(a: np.ndarray, same_line: bool, glued: bool = False) -> str:
    counts = f"{len(a)} 1 0"
    head = (f"OFF{counts}\n" if glued else f"OFF {counts}\n") if same_line else f"OFF\n{counts}\n"
    verts = "".join(f"{x!r} {y!r} {z!r}\n" for x, y, z in a.tolist())
    return head + "# vertices follow\n" + verts + "3 0 1 2  # a face\n"


@pytest.mark.parametrize("same_line,glued", [(False, False), (True, False), (True, True)])
def test_off_variants(tmp_path, same_line, glued):
    a = cloud(6)
    (tmp_path / "m.off").write_text(off_text(a, same_line, glued))
    (g,) = read_point_clouds(tmp_path / "m.off", mesh_points=None)
    np.testing.assert_array_equal(g, a)
    (geo,) = read_geometry(tmp_path / "m.off")
    np.testing.assert_array_equal(geo.triangles, [[0, 1, 2]])


def test_off_extra_columns_and_blank_lines(tmp_path):
    text = "OFF\n\n2 0 0\n0.5 1 2 255 0 0\n\n3 4 5.25 0 255 0\n"
    (tmp_path / "m.off").write_text(text)
    (g,) = read_point_clouds(tmp_path / "m.off")
    np.testing.assert_array_equal(g, np.array([[0.5, 1, 2], [3, 4, 5.25]], np.float32))


@pytest.mark.parametrize(
    "text,match",
    [
        ("PLY\n1 0 0\n0 0 0\n", "not an OFF"),
        ("OFF\n", "no vertex/face counts"),
        ("OFF\nthree 0 0\n", "counts"),
        ("OFF\n3 0 0\n0 0 0\n1 1 1\n", "truncated"),
        ("OFF\n2 0 0\n0 0 0\n1 1\n", "line 4: expected 3 numbers for a vertex"),
        ("OFF\n0 0 0\n", "empty"),
        ("OFF\n1 0 0\nnan 0 0\n", "NaN"),
    ],
)
def test_off_malformed(tmp_path, text, match):
    (tmp_path / "m.off").write_text(text)
    expect_error(tmp_path / "m.off", match)


# ---- shape / value errors common to all formats --------------------------------------------


@pytest.mark.parametrize(
    "arr,match",
    [
        (np.zeros((5, 2)), r"expected \(N, 3\)"),
        (np.zeros((2, 5, 4)), r"expected \(N, 3\)"),
        (np.zeros(5), r"expected \(N, 3\) or \(B, N, 3\)"),
        (np.zeros((0, 3)), "empty"),
        (np.zeros((2, 0, 3)), "empty"),
        (np.zeros((0, 4, 3)), "0 clouds"),
        (np.array([[0, 0, np.inf]]), "NaN/inf"),
        (np.array([[0, 0, 1e300]]), "NaN/inf"),
        (np.array([[1 + 1j, 0, 0]]), "complex128 .need real numbers"),
    ],
)
def test_npy_bad_arrays(tmp_path, arr, match):
    np.save(tmp_path / "x.npy", arr)
    expect_error(tmp_path / "x.npy", match)


def test_unknown_extension_and_missing(tmp_path):
    (tmp_path / "x.abc").write_text("0 0 0\n")
    expect_error(tmp_path / "x.abc", r"unsupported.*\.abc.*\.ply")
    with pytest.raises(FileNotFoundError):
        read_point_clouds(tmp_path / "nope.ply")


def test_corrupt_npy(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"\x93NUMPY garbage")
    expect_error(tmp_path / "x.npy", r"malformed \.npy header \(unknown format version 32\.103\)")


def test_readers_are_torch_free(tmp_path):
    a = cloud(4)
    np.save(tmp_path / "x.npy", a)
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from bingnn.data.point_files import read_geometry, read_point_clouds\n"
        "import bingnn.data as d\n"
        f"print(read_point_clouds({str(tmp_path / 'x.npy')!r})[0].shape)\n"
        "x, y = d.make_synthetic_shapes(12, 16, 0)\n"
        "print(d.overall_accuracy(y, y))\n"
        "try:\n    d.get_dataset\nexcept ImportError:\n    print('lazy')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["(4,", "3)", "1.0", "lazy"]
