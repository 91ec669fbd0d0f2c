"""ModelNet10: the HDF5 layout (shared copy and fixtures) and the official-zip path (.off meshes
sampled into an HDF5 cache), on small .off fixtures written here and served by file:// and a
local HTTP server."""

from __future__ import annotations

import functools
import http.server
import os
import threading
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from bingnn.data.mesh import sample_surface
from bingnn.data.modelnet10 import (
    CLASS_NAMES,
    URL_ENV,
    build_modelnet10_cache,
    download_modelnet10,
    find_modelnet10,
    load_modelnet10,
)
from bingnn.data.resample import normalize_unit_sphere

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "modelnet10"
SHARED = SHARED if SHARED.is_dir() else Path("/work/shared/data/modelnet10")

CUBE_V = np.array([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)])
CUBE_F = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]
TETRA_V = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
TETRA_F = [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]
PYRAMID_V = np.array([[-1.0, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0], [0, 0, 1.5]])
PYRAMID_F = [[0, 3, 2, 1], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]]
SHAPES = {"bed": (CUBE_V, CUBE_F), "chair": (TETRA_V, TETRA_F), "table": (PYRAMID_V, PYRAMID_F)}


def off_text(v: np.ndarray, faces: list[list[int]], glued: bool) -> str:
    head = f"OFF{len(v)} {len(faces)} 0\n" if glued else f"OFF\n{len(v)} {len(faces)} 0\n"
    return (head + "".join(" ".join(f"{c!r}" for c in p) + "\n" for p in v.tolist())
            + "".join(f"{len(f)} {' '.join(map(str, f))}\n" for f in faces))


def write_zip(path: Path, counts=None, extra: dict | None = None) -> dict[str, dict]:
    """A ModelNet10-like zip; each mesh scaled and moved (raw units vary wildly in the
    release). Returns {split: {member: (vertices, triangle list)}}."""
    counts = counts or {"train": 3, "test": 2}
    rng = np.random.default_rng(0)
    made: dict[str, dict] = {"train": {}, "test": {}}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ModelNet10/README.txt", "fixture")
        for cls, (v, f) in SHAPES.items():
            for split, n in counts.items():
                for i in range(n):
                    vv = v * rng.uniform(0.1, 2e4) + rng.uniform(-500, 500, 3)
                    member = f"ModelNet10/{cls}/{split}/{cls}_{i + 1:04d}.off"
                    zf.writestr(member, off_text(vv, f, glued=i % 2 == 0))
                    zf.writestr(f"__MACOSX/ModelNet10/{cls}/{split}/._{cls}_{i + 1:04d}.off",
                                b"\x00\x05\x16\x07 resource fork")
                    made[split][member] = (vv, f)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return made


def expected_cloud(member: str, v, f, num_points=64, oversample=4, seed=0) -> np.ndarray:
    """The documented pipeline, step by step: triangulate, sample with the shape's seed,
    normalise."""
    tris = np.array([[p[0], p[i], p[i + 1]] for p in f for i in range(1, len(p) - 1)])
    ss = np.random.SeedSequence([seed, zlib.crc32(member.encode())])
    pts = sample_surface(v, tris, num_points, seed=ss, oversample=oversample)
    return normalize_unit_sphere(pts)


@pytest.fixture
def mn10_zip(tmp_path):
    z = tmp_path / "ModelNet10.zip"
    return z, write_zip(z)


def test_build_from_zip_matches_the_pipeline(tmp_path, mn10_zip):
    z, made = mn10_zip
    root = tmp_path / "data"
    folder = download_modelnet10(root, url=z.as_uri(), num_points=64, progress=False)
    assert folder == root / "modelnet10"
    assert sorted(os.listdir(root)) == ["modelnet10"]  # no temp folder, the zip untouched
    assert z.is_file()
    for split in ("train", "test"):
        pts, lbl, names = load_modelnet10(root, split)
        assert names == sorted(SHAPES)
        members = sorted(made[split], key=lambda m: (m.split("/")[1], m.rsplit("/", 1)[1]))
        assert pts.shape == (len(members), 64, 3) and pts.dtype == np.float32
        np.testing.assert_array_equal(lbl, [names.index(m.split("/")[1]) for m in members])
        with h5py.File(folder / f"ply_data_{split}0.h5") as f:
            assert [n.decode() for n in f["name"][()]] == [m.rsplit("/", 1)[1] for m in members]
        for cloud, m in zip(pts, members, strict=True):
            np.testing.assert_array_equal(cloud, expected_cloud(m, *made[split][m]))
            np.testing.assert_allclose(cloud.mean(0), 0, atol=1e-6)
            assert np.linalg.norm(cloud, axis=1).max() == pytest.approx(1.0, rel=1e-6)


def test_cube_points_lie_on_the_cube(tmp_path, mn10_zip):
    z, _ = mn10_zip
    build_modelnet10_cache(z, tmp_path / "c", num_points=256, oversample=1, progress=False)
    pts, lbl, names = load_modelnet10(tmp_path / "c", "train")
    cube = pts[lbl == names.index("bed")]
    for c in cube.astype(np.float64):
        # Every point lies on a face of the axis-aligned cube spanned by the sample (all six
        # faces hold points, so the bounding box is the cube).
        lo, hi = c.min(0), c.max(0)
        np.testing.assert_allclose(hi - lo, (hi - lo).mean(), rtol=1e-5)
        on_face = np.isclose(c, lo, atol=1e-6) | np.isclose(c, hi, atol=1e-6)
        assert on_face.any(axis=1).all()


def test_oversample_and_seed(tmp_path, mn10_zip):
    z, made = mn10_zip
    a = build_modelnet10_cache(z, tmp_path / "a", num_points=32, oversample=1, seed=3,
                               progress=False)
    pts, _, _ = load_modelnet10(a, "test")
    m = sorted(made["test"], key=lambda s: (s.split("/")[1], s.rsplit("/", 1)[1]))[0]
    np.testing.assert_array_equal(pts[0], expected_cloud(m, *made["test"][m], 32, 1, 3))
    b = build_modelnet10_cache(z, tmp_path / "b", num_points=32, oversample=1, seed=3,
                               progress=False)
    np.testing.assert_array_equal(load_modelnet10(b, "test")[0], pts)
    c = build_modelnet10_cache(z, tmp_path / "c", num_points=32, oversample=1, seed=4,
                               progress=False)
    assert not np.array_equal(load_modelnet10(c, "test")[0], pts)


def test_existing_cache_reused_force_rebuilds(tmp_path, mn10_zip):
    z, _ = mn10_zip
    root = tmp_path / "d"
    folder = download_modelnet10(root, url=z.as_uri(), num_points=16, progress=False)
    assert download_modelnet10(root, url=(tmp_path / "gone.zip").as_uri()) == folder
    (folder / "stale.txt").write_text("x")
    download_modelnet10(root, url=z.as_uri(), num_points=16, progress=False, force=True)
    assert not (folder / "stale.txt").exists()
    assert sorted(os.listdir(root)) == ["modelnet10"]


def test_download_over_http_and_env_url(tmp_path, mn10_zip, monkeypatch):
    z, _ = mn10_zip
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(z.parent))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/ModelNet10.zip"
        monkeypatch.setenv(URL_ENV, url)
        root = tmp_path / "h"
        folder = download_modelnet10(root, num_points=16, progress=False)
        assert sorted(os.listdir(root)) == ["modelnet10"]  # the fetched zip is removed
        assert load_modelnet10(folder, "train")[0].shape == (9, 16, 3)
        download_modelnet10(tmp_path / "k", num_points=16, progress=False, keep_zip=True)
        assert (tmp_path / "k" / "ModelNet10.zip").read_bytes() == z.read_bytes()
    finally:
        server.shutdown()
        server.server_close()


def test_download_error_names_the_mirror_variable(tmp_path):
    with pytest.raises(OSError) as e:
        download_modelnet10(tmp_path / "d", url=(tmp_path / "nope.zip").as_uri(), progress=False)
    msg = str(e.value)
    assert "could not download ModelNet10" in msg and f"set {URL_ENV}=" in msg
    assert "file:///path/to/ModelNet10.zip" in msg and "\n" not in msg
    assert os.listdir(tmp_path / "d") == []


@pytest.mark.parametrize(
    "extra,match",
    [
        ({"ModelNet10/bed/train/bed_0099.off": "OFF\n3 1 0\n0 0 0\n1 0 0\n"},
         r"ModelNet10\.zip:ModelNet10/bed/train/bed_0099\.off: truncated OFF"),
        ({"ModelNet10/sofa/train/sofa_0001.off": off_text(TETRA_V, TETRA_F, True)},
         "no test mesh for class.*sofa"),
    ],
)
def test_bad_archives(tmp_path, extra, match):
    z = tmp_path / "ModelNet10.zip"
    write_zip(z, extra=extra)
    with pytest.raises(ValueError, match=match):
        download_modelnet10(tmp_path / "d", url=z.as_uri(), num_points=8, progress=False)
    assert os.listdir(tmp_path / "d") == []  # nothing half-written


def test_not_modelnet(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a valid zip"):
        download_modelnet10(tmp_path / "d", url=bad.as_uri(), progress=False)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="not ModelNet10"):
        download_modelnet10(tmp_path / "d", url=other.as_uri(), progress=False)


def test_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="--download"):
        load_modelnet10(tmp_path / "nowhere", "train")


def test_get_dataset_modelnet10(tmp_path, mn10_zip, monkeypatch):
    from bingnn.data import get_dataset

    z, _ = mn10_zip
    monkeypatch.setenv(URL_ENV, z.as_uri())
    ds = get_dataset("modelnet10", "train", num_points=16, root=tmp_path, download=True)
    # 9 training shapes: 8 to train on, 1 held out for validation
    assert len(ds) == 8 and ds.class_names == sorted(SHAPES) and ds.num_points == 16
    assert len(get_dataset("modelnet10", "val", num_points=16, root=tmp_path)) == 1
    x, y = ds[0]
    assert tuple(x.shape) == (16, 3)


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared ModelNet10 copy is not on this machine")
def test_shared_copy_loads_unchanged():
    for root in (SHARED, SHARED.parent):
        assert find_modelnet10(root) == SHARED
    pts, lbl, names = load_modelnet10(SHARED, "test")
    assert names == list(CLASS_NAMES)
    assert pts.shape == (908, 1024, 3)
    np.testing.assert_array_equal(
        np.bincount(lbl, minlength=10), [50, 100, 100, 86, 86, 100, 86, 100, 100, 100]
    )
    train_lbl = load_modelnet10(SHARED, "train")[1]
    np.testing.assert_array_equal(
        np.bincount(train_lbl, minlength=10), [106, 515, 889, 200, 200, 465, 200, 680, 392, 344]
    )
