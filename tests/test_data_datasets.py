"""Torch Dataset wrappers: items, determinism per (seed, epoch, index), get_dataset."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import bingnn.data as data
from bingnn.data import PointCloudDataset, get_dataset
from bingnn.data.synthetic import SYNTHETIC_CLASSES


def small(m=6, p=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (m, p, 3)).astype(np.float32), rng.integers(0, 3, m)


def affine_fit(x: np.ndarray, y: np.ndarray):
    """y is a shuffled x * s + t with s > 0: sorting each axis undoes the shuffle."""
    xs, ys = np.sort(x, 0).astype(np.float64), np.sort(y, 0).astype(np.float64)
    s = np.array([np.polyfit(xs[:, d], ys[:, d], 1) for d in range(3)])
    return s[:, 0], s[:, 1], np.abs(xs * s[:, 0] + s[:, 1] - ys).max()


def test_items_without_augmentation():
    x, y = small()
    ds = PointCloudDataset(x, y, ["a", "b", "c"], num_points=32, augment=False)
    assert len(ds) == 6 and ds.num_classes == 3 and ds.class_names == ["a", "b", "c"]
    p, lbl = ds[4]
    assert p.dtype == torch.float32 and p.shape == (32, 3)
    assert lbl.dtype == torch.int64 and lbl.shape == () and int(lbl) == y[4]
    np.testing.assert_array_equal(p.numpy(), x[4, :32])
    np.testing.assert_array_equal(ds[-1][0].numpy(), x[5, :32])
    with pytest.raises(IndexError):
        ds[6]


def test_augmented_item_is_scaled_shifted_shuffled_subset():
    x, y = small()
    ds = PointCloudDataset(x, y, ["a", "b", "c"], num_points=32, augment=True, seed=1)
    p = ds[2][0].numpy()
    s, t, err = affine_fit(x[2, :32], p)
    assert err < 1e-5
    assert np.all((s >= 2 / 3 - 1e-5) & (s <= 1.5 + 1e-5)) and np.all(np.abs(t) <= 0.2 + 1e-5)
    assert not np.allclose(p, x[2, :32] * s + t)  # the order changed


def test_augmentation_is_a_function_of_seed_epoch_index():
    x, y = small()
    a = PointCloudDataset(x, y, ["a", "b", "c"], 32, augment=True, seed=5)
    b = PointCloudDataset(x, y, ["a", "b", "c"], 32, augment=True, seed=5)
    c = PointCloudDataset(x, y, ["a", "b", "c"], 32, augment=True, seed=6)
    torch.testing.assert_close(a[3][0], b[3][0], rtol=0, atol=0)
    torch.testing.assert_close(a[3][0], a[3][0], rtol=0, atol=0)  # re-reading repeats it
    assert not torch.equal(a[3][0], c[3][0])
    e0 = a[3][0]
    a.set_epoch(1)
    assert not torch.equal(a[3][0], e0)
    a.set_epoch(0)
    torch.testing.assert_close(a[3][0], e0, rtol=0, atol=0)
    with pytest.raises(ValueError):
        a.set_epoch(-1)


def batches(ds, workers):
    loader = DataLoader(ds, batch_size=4, shuffle=False, num_workers=workers)
    return [(p.clone(), lb.clone()) for p, lb in loader]


def test_loader_independent_of_worker_count():
    x, y = small(m=10)
    ds = PointCloudDataset(x, y, ["a", "b", "c"], 24, augment=True, seed=3)
    ds.set_epoch(2)
    one, two = batches(ds, 0), batches(ds, 2)
    assert [p.shape for p, _ in one] == [(4, 24, 3), (4, 24, 3), (2, 24, 3)]
    assert one[0][1].dtype == torch.int64 and one[0][1].shape == (4,)
    for (p0, l0), (p1, l1) in zip(one, two, strict=True):
        assert torch.equal(p0, p1) and torch.equal(l0, l1)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(points=np.zeros((2, 5, 2))), ValueError, r"\(M, P, 3\)"),
        (dict(labels=np.zeros(3, int)), ValueError, "labels must have shape"),
        (dict(labels=np.array([0, 7])), ValueError, "3 class names"),
        (dict(labels=np.array([0.0, 1.0])), TypeError, "integers"),
        (dict(num_points=6), ValueError, "only 5"),
        (dict(points=np.full((2, 5, 3), np.nan)), ValueError, "NaN"),
        (dict(points=np.zeros((0, 5, 3)), labels=np.zeros(0, int)), ValueError, "empty"),
    ],
)
def test_bad_construction(kwargs, exc, match):
    args = dict(
        points=np.zeros((2, 5, 3)),
        labels=np.array([0, 1]),
        class_names=["a", "b", "c"],
        num_points=5,
    )
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        PointCloudDataset(**args)


def test_get_dataset_synthetic():
    tr = get_dataset("synthetic", "train", num_points=64, num_samples=36, seed=0)
    te = get_dataset("synthetic", "test", num_points=64, num_samples=24, seed=0)
    assert len(tr) == 32 and len(te) == 24  # 36 less the 10% validation carve
    assert tr.num_classes == len(SYNTHETIC_CLASSES) and tr.class_names == list(SYNTHETIC_CLASSES)
    assert tr.augment and not te.augment
    assert tr[0][0].shape == (64, 3)
    assert not np.allclose(tr.points[:24], te.points)
    # augment=False gives the generated cloud itself; augment defaults can be overridden.
    raw = get_dataset("synthetic", "train", num_points=64, num_samples=36, augment=False)
    np.testing.assert_array_equal(raw[0][0].numpy(), data.make_synthetic_shapes(36, 64, 0)[0][0])


def test_get_dataset_synthetic_default_size():
    ds = get_dataset("synthetic", "test", num_points=16)
    assert len(ds) == 50 * len(SYNTHETIC_CLASSES)
    assert np.all(np.bincount(ds.labels) == 50)


def write_modelnet(folder, n_points=40):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    (folder / "shape_names.txt").write_text("a\nb\nc\n")
    for split, m in (("train", 7), ("test", 3)):
        with h5py.File(folder / f"ply_data_{split}0.h5", "w") as f:
            f["data"] = rng.uniform(-1, 1, (m, n_points, 3)).astype(np.float32)
            f["label"] = rng.integers(0, 3, (m, 1)).astype(np.uint8)
        (folder / f"{split}_files.txt").write_text(f"data/x/ply_data_{split}0.h5\n")


def test_get_dataset_modelnet40(tmp_path):
    write_modelnet(tmp_path / "modelnet40_ply_hdf5_2048")
    ds = get_dataset("modelnet40", "test", num_points=32, root=tmp_path)
    assert len(ds) == 3 and ds.num_classes == 3 and not ds.augment
    with h5py.File(tmp_path / "modelnet40_ply_hdf5_2048" / "ply_data_test0.h5") as f:
        np.testing.assert_array_equal(ds[1][0].numpy(), f["data"][1, :32])
        assert int(ds[1][1]) == f["label"][1, 0]
    sub = get_dataset("modelnet40", "test", num_points=32, root=tmp_path, num_samples=2)
    assert len(sub) == 2 and not sub.augment
    tr = get_dataset("modelnet40", "train", num_points=32, root=tmp_path)
    va = get_dataset("modelnet40", "val", num_points=32, root=tmp_path)
    assert (len(tr), len(va)) == (6, 1) and tr.augment and not va.augment  # 10% of 7


def test_train_and_val_partition_the_training_set_stratified(tmp_path):
    """A class-sorted training file: the validation split and --train-samples subsets hold
    every class in proportion (the first N clouds would hold one or two classes)."""
    folder = tmp_path / "modelnet40_ply_hdf5_2048"
    folder.mkdir()
    (folder / "shape_names.txt").write_text("a\nb\nc\nd\n")
    labels = np.repeat(np.arange(4), [40, 20, 20, 20]).astype(np.uint8)
    pts = np.random.default_rng(0).uniform(-1, 1, (100, 8, 3)).astype(np.float32)
    pts[:, 0, 0] = np.arange(100)  # a cloud's identity
    for split, y in (("train", labels), ("test", labels[:8])):
        with h5py.File(folder / f"ply_data_{split}0.h5", "w") as f:
            f["data"] = pts[: len(y)]
            f["label"] = y[:, None]
        (folder / f"{split}_files.txt").write_text(f"data/x/ply_data_{split}0.h5\n")
    kw = dict(num_points=8, root=tmp_path, augment=False)
    tr, va = get_dataset("modelnet40", "train", **kw), get_dataset("modelnet40", "val", **kw)
    assert np.bincount(va.labels).tolist() == [4, 2, 2, 2]
    ids = np.concatenate([tr.points[:, 0, 0], va.points[:, 0, 0]])
    assert sorted(ids.tolist()) == list(range(100))  # a partition of the training set
    # the same carve for every run seed (split_seed is separate)
    va2 = get_dataset("modelnet40", "val", **kw, seed=5)
    np.testing.assert_array_equal(va.points, va2.points)
    sub = get_dataset("modelnet40", "train", **kw, num_samples=20)
    # 20 clouds, 8/4/4/4 per class, less the 10% validation carve (2: largest remainders)
    assert len(sub) == 18 and np.bincount(sub.labels).tolist() == [7, 3, 4, 4]
    with pytest.raises(ValueError, match="num_samples"):
        get_dataset("modelnet40", "train", **kw, num_samples=101)


def test_get_dataset_modelnet40_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="--download"):
        get_dataset("modelnet40", "train", root=tmp_path / "nothing")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(name="shapenet"), "unknown dataset"),
        (dict(name="synthetic", split="valid"), "split"),
        (dict(name="synthetic", split="val", num_samples=4), "empty"),
        (dict(name="synthetic", val_fraction=1.0), "val_fraction"),
        (dict(name="synthetic", num_samples=0), "num_samples"),
    ],
)
def test_get_dataset_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_dataset(**kwargs)


def test_lazy_exports():
    assert "get_dataset" in dir(data) and data.PointCloudDataset is PointCloudDataset
    with pytest.raises(AttributeError):
        data.not_a_name  # noqa: B018
