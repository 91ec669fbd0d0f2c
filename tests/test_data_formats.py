"""Mesh and point formats beyond the array files: OFF quirks, OBJ, PLY meshes, PCD (ascii,
binary, LZF-compressed), text point lists; and the misleading messages of issue 11 finding 7."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest

from bingnn.data.formats import PointFileError, lzf_decompress, read_pcd
from bingnn.data.point_files import read_geometry, read_point_clouds

CUBE_V = np.array(
    [[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)]
)
# The six faces as quads (vertex index = 4x + 2y + z with 0/1 coordinates).
CUBE_QUADS = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]


def err(path, match: str, **kw) -> None:
    with pytest.raises(ValueError) as e:
        read_point_clouds(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    assert re.search(match, msg), msg


def on_cube_surface(pts: np.ndarray) -> bool:
    return bool(np.allclose(np.abs(pts).max(axis=1), 1.0, atol=1e-6) and np.abs(pts).max() <= 1)


def cube_off(glued: bool = True, colours: bool = False) -> str:
    head = "OFF8 6 0\n" if glued else "OFF\n8 6 12\n"
    vs = "".join(" ".join(f"{c:g}" for c in v) + (" 255 0 0" if colours else "") + "\n"
                 for v in CUBE_V)
    fs = "".join(f"4 {' '.join(map(str, q))}" + (" 0.5 0.5 0.5" if colours else "") + "\n"
                 for q in CUBE_QUADS)
    return head + vs + fs


@pytest.mark.parametrize("glued,colours", [(True, False), (False, True)])
def test_off_cube_quads_sampled_on_surface(tmp_path, glued, colours):
    (tmp_path / "cube.off").write_text(cube_off(glued, colours))
    (g,) = read_geometry(tmp_path / "cube.off")
    assert g.triangles.shape == (12, 3)
    (pts,) = read_point_clouds(tmp_path / "cube.off", mesh_points=3000, seed=1)
    assert pts.shape == (3000, 3) and pts.dtype == np.float32
    assert on_cube_surface(pts)
    # Six faces of equal area: each gets about a sixth of the points.
    axis = np.argmax(np.abs(pts), axis=1)
    face = axis * 2 + (pts[np.arange(3000), axis] > 0)
    assert np.bincount(face, minlength=6).min() > 400
    (again,) = read_point_clouds(tmp_path / "cube.off", mesh_points=3000, seed=1)
    np.testing.assert_array_equal(pts, again)


@pytest.mark.parametrize(
    "text,match",
    [
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n", "refers to vertex 3 but there are 3"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1\n", "line 6: malformed face"),
        ("OFF\n3 2 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "truncated OFF.*2 faces"),
        ("OFF\n3 1 0\n0 0 0\n0 0 0\n0 0 0\n3 0 1 2\n", "no surface"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\nnan 1 0\n3 0 1 2\n", "NaN/inf vertex"),
        ("4OFF\n1 0 0\n0 0 0 0\n", "not 3-D"),
        ("OFF BINARY\n", "binary OFF"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 99999999999999999999999\n", "vertex"),
    ],
)
def test_off_mesh_errors(tmp_path, text, match):
    (tmp_path / "m.off").write_text(text)
    err(tmp_path / "m.off", match)


def test_obj(tmp_path):
    lines = ["# cube", "mtllib x.mtl", "o cube"]
    lines += [f"v {x:g} {y:g} {z:g}" for x, y, z in CUBE_V]
    lines += ["vn 0 0 1", "vt 0 0", "usemtl m", "s off"]
    # 1-based, with texture/normal references, and one face with negative (relative) indices.
    for q in CUBE_QUADS[:-1]:
        lines.append("f " + " ".join(f"{i + 1}/1/1" for i in q))
    lines.append("f " + " ".join(str(i - 8) for i in CUBE_QUADS[-1]))
    (tmp_path / "c.obj").write_text("\n".join(lines) + "\n")
    (g,) = read_geometry(tmp_path / "c.obj")
    np.testing.assert_array_equal(g.vertices, CUBE_V)
    assert g.triangles.shape == (12, 3)
    np.testing.assert_array_equal(g.triangles[-2:], [[1, 5, 7], [1, 7, 3]])
    (pts,) = read_point_clouds(tmp_path / "c.obj", mesh_points=500)
    assert on_cube_surface(pts)


@pytest.mark.parametrize(
    "text,match",
    [
        ("v 0 0 0\nf 1 2 3\n", "face index 2 does not name one of the 1 vertices"),
        ("v 0 0 0\nv 1 0 0\nf 1 2\n", "at least 3"),
        ("v 0 0\n", "line 1: expected 3 numbers"),
        ("vn 0 0 1\n", "no vertex"),
        ("f 1 2 3\n", "face index 1 does not name one of the 0 vertices"),
        ("v 0 0 0\nf a b c\n", "malformed face corner"),
    ],
)
def test_obj_errors(tmp_path, text, match):
    (tmp_path / "m.obj").write_text(text)
    err(tmp_path / "m.obj", match)


def test_obj_points_only(tmp_path):
    (tmp_path / "p.obj").write_text("v 0 0 0\nv 1 2 3\n")
    (pts,) = read_point_clouds(tmp_path / "p.obj")
    np.testing.assert_array_equal(pts, [[0, 0, 0], [1, 2, 3]])


@pytest.mark.parametrize("mixed", [False, True])
@pytest.mark.parametrize("fmt,e", [("binary_little_endian", "<"), ("binary_big_endian", ">"),
                                   ("ascii", None)])
def test_ply_mesh(tmp_path, fmt, e, mixed):
    polys = CUBE_QUADS if not mixed else [[0, 1, 3], [0, 3, 2], *CUBE_QUADS[1:]]
    head = (f"ply\nformat {fmt} 1.0\nelement vertex 8\nproperty double x\nproperty double y\n"
            f"property double z\nelement face {len(polys)}\n"
            "property list uchar int vertex_indices\nproperty uchar flags\nend_header\n").encode()
    if e is None:
        body = "".join(" ".join(f"{c:g}" for c in v) + "\n" for v in CUBE_V)
        body += "".join(f"{len(q)} {' '.join(map(str, q))} 7\n" for q in polys)
        raw = head + body.encode()
    else:
        raw = head + CUBE_V.astype(e + "f8").tobytes()
        for q in polys:
            raw += bytes([len(q)]) + np.array(q, e + "i4").tobytes() + bytes([7])
    (tmp_path / "m.ply").write_bytes(raw)
    (g,) = read_geometry(tmp_path / "m.ply")
    np.testing.assert_array_equal(g.vertices, CUBE_V)
    assert g.triangles.shape == (12, 3)
    tris = {tuple(sorted(t)) for t in g.triangles.tolist()}
    assert (0, 1, 3) in tris and (0, 2, 3) in tris
    (pts,) = read_point_clouds(tmp_path / "m.ply", mesh_points=400)
    assert on_cube_surface(pts)


def test_ply_face_index_out_of_range(tmp_path):
    raw = (b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
           b"property float z\nelement face 1\nproperty list uchar int vertex_indices\n"
           b"end_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 5\n")
    (tmp_path / "m.ply").write_bytes(raw)
    err(tmp_path / "m.ply", "refers to vertex 5 but there are 3")


# ---- PCD -------------------------------------------------------------------------------------


def pcd_header(n: int, data: str, fields="x y z rgb", size="4 4 4 4", typ="F F F U",
               count="1 1 1 1", height=1) -> bytes:
    return (f"# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS {fields}\n"
            f"SIZE {size}\nTYPE {typ}\nCOUNT {count}\nWIDTH {n // height}\nHEIGHT {height}\n"
            f"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {data}\n").encode()


def lzf_literals(data: bytes) -> bytes:
    """A valid LZF stream made of literal runs only (control byte = run length - 1)."""
    out = bytearray()
    for i in range(0, len(data), 32):
        chunk = data[i : i + 32]
        out += bytes([len(chunk) - 1]) + chunk
    return bytes(out)


def test_pcd_ascii_binary_compressed(tmp_path):
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(9, 3)).astype(np.float32)
    rgb = rng.integers(0, 2**24, 9).astype(np.uint32)
    xyz[4] = np.nan  # an organised cloud's missing return: dropped
    body = "".join(f"{x!r} {y!r} {z!r} {c}\n" for (x, y, z), c in zip(xyz.tolist(), rgb.tolist(),
                                                                        strict=True))
    (tmp_path / "a.pcd").write_bytes(pcd_header(9, "ascii", height=3) + body.encode())
    rec = np.empty(9, [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4")])
    rec["x"], rec["y"], rec["z"], rec["rgb"] = *xyz.T, rgb
    (tmp_path / "b.pcd").write_bytes(pcd_header(9, "binary") + rec.tobytes())
    soa = b"".join(np.ascontiguousarray(rec[f]).tobytes() for f in ("x", "y", "z", "rgb"))
    comp = lzf_literals(soa)
    sizes = np.array([len(comp), len(soa)], "<u4").tobytes()
    (tmp_path / "c.pcd").write_bytes(pcd_header(9, "binary_compressed") + sizes + comp)
    want = np.delete(xyz, 4, axis=0)
    for name in ("a.pcd", "b.pcd", "c.pcd"):
        (pts,) = read_point_clouds(tmp_path / name)
        np.testing.assert_array_equal(pts, want)


def test_lzf_back_references():
    # "abc" literal, then a back-reference of length 7 at distance 3 (overlapping: repeats abc),
    # then a long back-reference (length code 7 + extra byte) at distance 1.
    stream = bytes([2]) + b"abc" + bytes([(5 << 5) | 0, 2]) + bytes([(7 << 5) | 0, 3, 0])
    assert lzf_decompress(stream, 3 + 7 + 12) == b"abcabcabca" + b"a" * 12
    for bad in (bytes([5]) + b"ab", bytes([(1 << 5), 9]), bytes([0]) + b"a" + bytes([32])):
        with pytest.raises(ValueError):
            lzf_decompress(bad, 8)


@pytest.mark.parametrize(
    "raw,match",
    [
        (pcd_header(3, "binary") + b"\0" * 20, "truncated PCD"),
        (pcd_header(3, "ascii") + b"0 0 0 0\n", "truncated PCD"),
        (pcd_header(2, "ascii") + b"0 0 0 0\n1 1 1\n", "line 2: expected 4 numbers"),
        (pcd_header(2, "ascii", fields="x y w rgb"), "no field.*z"),
        (pcd_header(2, "binary_compressed") + np.array([4, 32], "<u4").tobytes() + b"\x1f\0\0\0",
         "corrupt compressed"),
        (pcd_header(2, "binary_compressed") + np.array([4, 99], "<u4").tobytes(), "implies 32"),
        (pcd_header(2, "lzma"), "unsupported PCD DATA"),
        (pcd_header(1, "ascii") + b"nan nan nan 0\n", "none of the 1 points"),
        (b"hello\n", "not a PCD"),
    ],
)
def test_pcd_errors(tmp_path, raw, match):
    (tmp_path / "e.pcd").write_bytes(raw)
    err(tmp_path / "e.pcd", match)
    with pytest.raises(PointFileError):
        read_pcd(tmp_path / "e.pcd")


# ---- text --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".xyz", ".txt", ".csv", ".pts"])
def test_text_points(tmp_path, ext):
    pts = np.random.default_rng(1).normal(size=(6, 3))
    body = "x,y,z,r,g,b\n# a comment\n" + "".join(
        f"{x!r}, {y!r},{z!r}, 1, 2, 3\n" for x, y, z in pts.tolist())
    (tmp_path / f"p{ext}").write_text(body)
    (got,) = read_point_clouds(tmp_path / f"p{ext}")
    np.testing.assert_array_equal(got, pts.astype(np.float32))
    (tmp_path / f"q{ext}").write_text("6\n" + "".join(f"{x} {y} {z}\n" for x, y, z in pts))
    (got,) = read_point_clouds(tmp_path / f"q{ext}")
    np.testing.assert_array_equal(got, pts.astype(np.float32))


@pytest.mark.parametrize(
    "body,match",
    [
        (b"0 0 0\n1 1\n", "line 2: expected 3 numbers"),
        (b"0 0 0\n1 1 x\n", "line 2: expected numbers"),
        (b"hello world\n", "no line holds a point"),
        (b"\0\1\2\3 binary", "binary data"),
        (b"", "no line holds a point"),
    ],
)
def test_text_errors(tmp_path, body, match):
    (tmp_path / "t.xyz").write_bytes(body)
    err(tmp_path / "t.xyz", match)


# ---- issue 11 finding 7: messages that pointed users the wrong way ---------------------------


def test_text_renamed_npy_says_what_it_is(tmp_path):
    (tmp_path / "pts.npy").write_text("0 0 0\n1 1 1\n")
    with pytest.raises(ValueError) as e:
        read_point_clouds(tmp_path / "pts.npy")
    msg = str(e.value)
    assert "allow_pickle" not in msg and "pickled" not in msg
    assert re.search(r"pts\.npy: a text file, not a NumPy \.npy file.*\.xyz", msg), msg


@pytest.mark.parametrize(
    "head,match",
    [(b"PK\x03\x04", "zip archive"), (b"\x80\x04\x95", "pickle"), (b"\x89HDF\r\n", "HDF5"),
     (b"", "empty file")],
)
def test_other_files_renamed_npy(tmp_path, head, match):
    (tmp_path / "x.npy").write_bytes(head + b"\0" * 8 if head else b"")
    err(tmp_path / "x.npy", match)


def test_npy_forged_shape_and_pickle_dtype(tmp_path):
    np.save(tmp_path / "ok.npy", np.zeros((4, 3), np.float32))
    raw = (tmp_path / "ok.npy").read_bytes().replace(b"(4, 3)", b"(9, 3)")
    (tmp_path / "short.npy").write_bytes(raw)
    err(tmp_path / "short.npy", r"truncated \.npy: shape \(9, 3\) needs 108 bytes of data, 48 ")
    huge = (tmp_path / "ok.npy").read_bytes().replace(b"(4, 3)", b"(99999999999, 3)")
    (tmp_path / "huge.npy").write_bytes(huge)
    err(tmp_path / "huge.npy", "too large")
    np.save(tmp_path / "obj.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    err(tmp_path / "obj.npy", "holds an array of object")


def test_h5_data_group_names_the_file(tmp_path):
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f.create_group("data").create_dataset("points", data=np.zeros((4, 3)))
    with pytest.raises(ValueError) as e:
        read_point_clouds(tmp_path / "g.h5")
    msg = str(e.value)
    assert "Accessing a group" not in msg
    assert msg.startswith(str(tmp_path / "g.h5"))
    assert "'data' is an HDF5 group, not a dataset" in msg


def test_h5_declared_size_beyond_storage(tmp_path):
    with h5py.File(tmp_path / "big.h5", "w") as f:
        f.create_dataset("data", shape=(100_000, 1024, 3), dtype="f4", chunks=(1, 1024, 3))
    err(tmp_path / "big.h5", "declares .* bytes but the file stores 0")


def test_directory_named_like_a_file(tmp_path):
    (tmp_path / "x.npy").mkdir()
    with pytest.raises(ValueError) as e:
        read_point_clouds(tmp_path / "x.npy")
    assert "not found" not in str(e.value)
    assert str(e.value) == f"{tmp_path / 'x.npy'}: is a directory, not a point-cloud or mesh file"
