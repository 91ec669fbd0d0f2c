"""ModelNet40 HDF5 loader and downloader, on small fixtures of the official layout (offline)."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from bingnn.data.modelnet40 import (
    FOLDER_NAME,
    download_modelnet40,
    find_modelnet40,
    load_modelnet40,
)

NAMES = ["airplane", "bathtub", "bed", "bench"]


def write_release(parent: Path, n_points: int = 32, seed: int = 0) -> dict:
    """A tiny release: 2 train files (5 + 3 clouds), 1 test file (4 clouds), 4 classes."""
    rng = np.random.default_rng(seed)
    folder = parent / FOLDER_NAME
    folder.mkdir(parents=True)
    (folder / "shape_names.txt").write_text("\n".join(NAMES) + "\n")
    made = {}
    for split, sizes in (("train", [5, 3]), ("test", [4])):
        lines, pts, lbl = [], [], []
        for i, m in enumerate(sizes):
            data = rng.uniform(-1, 1, size=(m, n_points, 3)).astype(np.float32)
            label = rng.integers(0, len(NAMES), size=(m, 1)).astype(np.uint8)
            with h5py.File(folder / f"ply_data_{split}{i}.h5", "w") as f:
                f["data"], f["label"] = data, label
                f["normal"] = np.zeros_like(data)  # the real release has extra datasets
            lines.append(f"data/{FOLDER_NAME}/ply_data_{split}{i}.h5")
            pts.append(data)
            lbl.append(label[:, 0])
        (folder / f"{split}_files.txt").write_text("\n".join(lines) + "\n")
        made[split] = (np.concatenate(pts), np.concatenate(lbl).astype(np.int64))
    return made


def make_zip(src_parent: Path, zpath: Path, extra: dict | None = None) -> Path:
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted((src_parent / FOLDER_NAME).iterdir()):
            zf.write(p, f"{FOLDER_NAME}/{p.name}")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return zpath


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("as_parent", [True, False])
def test_load_matches_files(tmp_path, split, as_parent):
    made = write_release(tmp_path)
    root = tmp_path if as_parent else tmp_path / FOLDER_NAME
    pts, lbl, names = load_modelnet40(root, split)
    np.testing.assert_array_equal(pts, made[split][0])
    np.testing.assert_array_equal(lbl, made[split][1])
    assert pts.dtype == np.float32 and lbl.dtype == np.int64 and lbl.shape == (len(pts),)
    assert names == NAMES


def test_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="--download"):
        load_modelnet40(tmp_path / "nowhere", "train")


@pytest.mark.parametrize("victim", ["ply_data_train1.h5", "test_files.txt", "shape_names.txt"])
def test_incomplete_folder(tmp_path, victim):
    write_release(tmp_path)
    (tmp_path / FOLDER_NAME / victim).unlink()
    for root in (tmp_path, tmp_path / FOLDER_NAME):
        with pytest.raises(FileNotFoundError) as e:
            load_modelnet40(root, "train")
        msg = str(e.value)
        assert "is incomplete, missing: " in msg and victim in msg and "--download" in msg


def test_bad_split(tmp_path):
    write_release(tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_modelnet40(tmp_path, "val")


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda f: f.__delitem__("label"), "'data' and 'label'"),
        (
            lambda f: (f.__delitem__("label"), f.__setitem__("label", np.zeros((2, 1), "u1"))),
            "5 clouds but 2 labels",
        ),
        (
            lambda f: (f.__delitem__("label"), f.__setitem__("label", np.full((5, 1), 9, "u1"))),
            "labels outside",
        ),
        (
            lambda f: (f.__delitem__("data"), f.__setitem__("data", np.zeros((5, 32, 2), "f4"))),
            r"expected \(M, N, 3\)",
        ),
    ],
)
def test_corrupt_file_contents(tmp_path, mutate, match):
    write_release(tmp_path)
    with h5py.File(tmp_path / FOLDER_NAME / "ply_data_train0.h5", "a") as f:
        mutate(f)
    with pytest.raises(ValueError, match=match):
        load_modelnet40(tmp_path, "train")


def test_not_hdf5(tmp_path):
    write_release(tmp_path)
    (tmp_path / FOLDER_NAME / "ply_data_test0.h5").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="HDF5"):
        load_modelnet40(tmp_path, "test")


# ---- download --------------------------------------------------------------------------------


@pytest.fixture
def release_zip(tmp_path):
    src = tmp_path / "src"
    made = write_release(src)
    return make_zip(src, tmp_path / "mn40.zip"), made


def test_download_from_file_url(tmp_path, release_zip):
    zpath, made = release_zip
    root = tmp_path / "data"
    folder = download_modelnet40(root, url=zpath.as_uri(), progress=False)
    assert folder == root / FOLDER_NAME
    pts, lbl, names = load_modelnet40(root, "train")
    np.testing.assert_array_equal(pts, made["train"][0])
    np.testing.assert_array_equal(lbl, made["train"][1])
    assert sorted(os.listdir(root)) == [FOLDER_NAME]  # no zip, no temp files left
    # A complete copy is reused: a broken URL is not even opened.
    assert download_modelnet40(root, url=(tmp_path / "gone.zip").as_uri()) == folder


def test_download_force_and_keep_zip(tmp_path, release_zip):
    zpath, _ = release_zip
    root = tmp_path / "data"
    download_modelnet40(root, url=zpath.as_uri(), progress=False)
    (root / FOLDER_NAME / "stale.txt").write_text("old")
    download_modelnet40(root, url=zpath.as_uri(), progress=False, force=True, keep_zip=True)
    assert not (root / FOLDER_NAME / "stale.txt").exists()
    assert (root / f"{FOLDER_NAME}.zip").read_bytes() == zpath.read_bytes()


def test_download_missing_url(tmp_path):
    with pytest.raises(OSError, match="mirror"):
        download_modelnet40(tmp_path / "d", url=(tmp_path / "nope.zip").as_uri(), progress=False)
    assert os.listdir(tmp_path / "d") == []


def test_download_not_a_zip(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="not a valid zip"):
        download_modelnet40(tmp_path / "d", url=bad.as_uri(), progress=False)
    assert os.listdir(tmp_path / "d") == []


def test_download_wrong_archive(tmp_path):
    z = tmp_path / "other.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="not ModelNet40"):
        download_modelnet40(tmp_path / "d", url=z.as_uri(), progress=False)


@pytest.mark.parametrize("member", ["../evil.txt", f"{FOLDER_NAME}/../../evil.txt", "/abs.txt"])
def test_zip_path_traversal_refused(tmp_path, release_zip, member):
    zpath, _ = release_zip
    make_zip(tmp_path / "src", zpath, extra={member: "pwned"})
    root = tmp_path / "deep" / "data"
    with pytest.raises(ValueError, match="path leaves"):
        download_modelnet40(root, url=zpath.as_uri(), progress=False)
    assert not (tmp_path / "deep" / "evil.txt").exists()
    assert not (tmp_path / "evil.txt").exists()
    assert os.listdir(root) == []  # nothing extracted, nothing half-installed


def test_zip_symlink_refused(tmp_path, release_zip):
    zpath, _ = release_zip
    info = zipfile.ZipInfo(f"{FOLDER_NAME}/link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(zpath, "a") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ValueError, match="symbolic link"):
        download_modelnet40(tmp_path / "d", url=zpath.as_uri(), progress=False)


def test_find_reports_all_missing(tmp_path):
    write_release(tmp_path)
    for n in ("ply_data_train0.h5", "ply_data_test0.h5"):
        (tmp_path / FOLDER_NAME / n).unlink()
    with pytest.raises(FileNotFoundError) as e:
        find_modelnet40(tmp_path)
    assert "ply_data_train0.h5" in str(e.value) and "ply_data_test0.h5" in str(e.value)


def test_download_error_names_a_working_mirror_option(tmp_path, release_zip, monkeypatch):
    # The old message said "pass url=", which the command line has no way to do.
    with pytest.raises(OSError) as e:
        download_modelnet40(tmp_path / "d", url=(tmp_path / "nope.zip").as_uri(), progress=False)
    assert "set BINGNN_MODELNET40_URL=" in str(e.value)
    zpath, made = release_zip
    monkeypatch.setenv("BINGNN_MODELNET40_URL", zpath.as_uri())
    folder = download_modelnet40(tmp_path / "e", progress=False)
    np.testing.assert_array_equal(load_modelnet40(folder, "test")[0], made["test"][0])
