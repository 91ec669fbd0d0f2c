"""Planetoid and OGB loaders on small on-disk fixtures (offline)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _graphs import PLANETOID_RAW

from bingnn.distill.recipe import load_recipe, node_recipe_for, stage_config
from bingnn.graphs.datasets import NODE_DATASETS, load_node_dataset
from bingnn.graphs.node_metrics import node_score as evaluate
from bingnn.graphs.ogb import load_ogb
from bingnn.graphs.planetoid import RAW_SUFFIXES, load_planetoid

needs_planetoid = pytest.mark.skipif(
    not (PLANETOID_RAW / "ind.cora.x").is_file(), reason="Planetoid raw files not available"
)


def _copy_raw(name: str, root: Path) -> Path:
    raw = root / {"cora": "Cora", "citeseer": "CiteSeer"}[name] / "raw"
    raw.mkdir(parents=True)
    for s in RAW_SUFFIXES:
        shutil.copyfile(PLANETOID_RAW / f"ind.{name}.{s}", raw / f"ind.{name}.{s}")
    return raw


@needs_planetoid
@pytest.mark.parametrize("name,nodes,edges,feats,classes,train", [
    ("cora", 2708, 10556, 1433, 7, 140),
    ("citeseer", 3327, 9104, 3703, 6, 120),
])
def test_planetoid_from_raw_folder(tmp_path, name, nodes, edges, feats, classes, train):
    _copy_raw(name, tmp_path)
    d = load_planetoid(name, tmp_path)
    assert (d.num_nodes, d.edge_index.size(1), d.num_features) == (nodes, edges, feats)
    assert int(d.y.max()) + 1 == classes
    assert (int(d.train_mask.sum()), int(d.val_mask.sum()), int(d.test_mask.sum())) == (
        train, 500, 1000)
    assert not (d.train_mask & d.test_mask).any()


@needs_planetoid
def test_planetoid_raw_dir_copy_and_normalisation(tmp_path):
    ds = load_node_dataset("cora", tmp_path, raw_dir=str(PLANETOID_RAW))
    assert (tmp_path / "Cora" / "raw" / "ind.cora.graph").is_file()
    sums = ds.data.x.sum(1)
    nonzero = sums > 0
    torch.testing.assert_close(sums[nonzero], torch.ones(int(nonzero.sum())))
    assert ds.num_classes == 7 and ds.metric == "acc" and not ds.multilabel
    raw = load_node_dataset("cora", tmp_path, normalize_features=False).data.x
    assert set(raw.unique().tolist()) <= {0.0, 1.0}  # bag-of-words bits


def test_planetoid_missing_and_unknown(tmp_path):
    with pytest.raises(ValueError, match="raw files missing"):
        load_planetoid("cora", tmp_path)
    with pytest.raises(ValueError, match="lacks the raw files"):
        load_planetoid("cora", tmp_path, raw_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown Planetoid"):
        load_planetoid("reddit", tmp_path)
    with pytest.raises(ValueError, match="unknown node dataset"):
        load_node_dataset("reddit", tmp_path)


@needs_planetoid
def test_planetoid_corrupt_raw_file(tmp_path):
    raw = _copy_raw("cora", tmp_path)
    (raw / "ind.cora.x").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="could not read Cora"):
        load_planetoid("cora", tmp_path)


# ------------------------------------------------------------------------------ OGB fixtures


def _csv_gz(path: Path, arr: np.ndarray, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        np.savetxt(f, arr, fmt=fmt, delimiter=",")


def _ogb_fixture(root: Path, name: str, n: int = 30, e: int = 50, seed: int = 0):
    """A tiny graph in OGB's on-disk layout (what the ogb package downloads and unzips)."""
    rng = np.random.default_rng(seed)
    d = root / name.replace("-", "_")
    edges = rng.integers(0, n, size=(e, 2))
    _csv_gz(d / "raw" / "edge.csv.gz", edges, "%d")
    _csv_gz(d / "raw" / "num-node-list.csv.gz", np.array([[n]]), "%d")
    _csv_gz(d / "raw" / "num-edge-list.csv.gz", np.array([[e]]), "%d")
    out = {"edges": edges}
    if name == "ogbn-proteins":
        ef = rng.random((e, 8))
        _csv_gz(d / "raw" / "edge-feat.csv.gz", ef, "%.6f")
        _csv_gz(d / "raw" / "node_species.csv.gz", rng.integers(0, 3, (n, 1)), "%d")
        y = rng.integers(0, 2, (n, 112))
        _csv_gz(d / "raw" / "node-label.csv.gz", y, "%d")
        split = "species"
        out.update(edge_feat=ef, y=y)
    else:
        x = rng.normal(size=(n, 4))
        classes = 40 if name == "ogbn-arxiv" else 47
        y = rng.integers(0, classes, (n, 1))
        _csv_gz(d / "raw" / "node-feat.csv.gz", x, "%.6f")
        _csv_gz(d / "raw" / "node-label.csv.gz", y, "%d")
        if name == "ogbn-arxiv":
            _csv_gz(d / "raw" / "node_year.csv.gz", rng.integers(2000, 2020, (n, 1)), "%d")
        split = "time" if name == "ogbn-arxiv" else "sales_ranking"
        out.update(x=x, y=y)
    perm = rng.permutation(n)
    for part, idx in (("train", perm[:18]), ("valid", perm[18:24]), ("test", perm[24:])):
        _csv_gz(d / "split" / split / f"{part}.csv.gz", idx[:, None], "%d")
    (d / "RELEASE_v1.txt").write_text("fixture")
    out["split"] = perm
    return out


def test_ogb_arxiv_fixture_and_evaluator(tmp_path):
    fx = _ogb_fixture(tmp_path, "ogbn-arxiv")
    ds = load_node_dataset("ogbn-arxiv", tmp_path)
    d = ds.data
    assert d.num_nodes == 30 and ds.num_classes == 40 and ds.metric == "ogb"
    torch.testing.assert_close(d.x, torch.tensor(fx["x"], dtype=torch.float32), atol=1e-5,
                               rtol=0)
    # citations are made undirected: every edge and its reverse
    pairs = {tuple(p) for p in d.edge_index.t().tolist()}
    for a, b in fx["edges"].tolist():
        if a != b:
            assert (a, b) in pairs and (b, a) in pairs
    assert sorted(d.train_idx.tolist()) == sorted(fx["split"][:18].tolist())
    assert sorted(d.test_idx.tolist()) == sorted(fx["split"][24:].tolist())
    logits = torch.randn(30, 40)
    acc = (logits.argmax(1) == d.y)[d.test_idx].float().mean().item()
    assert evaluate(logits, d.y, d.test_idx, "ogb", ds.evaluator) == pytest.approx(acc)
    # loading again uses the processed file
    assert load_ogb("ogbn-arxiv", tmp_path).data.num_nodes == 30


def test_ogb_proteins_fixture_features_are_mean_of_incident_edges(tmp_path):
    fx = _ogb_fixture(tmp_path, "ogbn-proteins", n=30, e=40)
    o = load_ogb("ogbn-proteins", tmp_path)
    assert o.multilabel and o.num_classes == 112 and o.metric == "rocauc"
    # ogb stores proteins' edges in both directions; x_i = mean over edges incident to i
    ref = np.zeros((30, 8))
    cnt = np.zeros(30)
    for (a, b), f in zip(fx["edges"].tolist(), fx["edge_feat"], strict=True):
        for v in {a, b} if a != b else {a}:
            ref[v] += f * (1 if a != b else 2)
            cnt[v] += 1 if a != b else 2
    ref = ref / np.maximum(cnt, 1)[:, None]
    torch.testing.assert_close(o.data.x, torch.tensor(ref, dtype=torch.float32), atol=1e-5,
                               rtol=0)
    assert o.data.y.shape == (30, 112) and o.data.y.dtype == torch.float32


def test_rocauc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (50, 4), generator=g)
    y[:, 3] = 1  # a task with one class only is skipped
    s = torch.randn(50, 4, generator=g)
    idx = torch.arange(50)
    ref = np.mean([roc_auc_score(y[:, t].numpy(), s[:, t].numpy()) for t in range(3)])
    assert evaluate(s, y, idx, "rocauc") == pytest.approx(ref)


def test_ogb_missing_dataset_is_clear(tmp_path):
    with pytest.raises(ValueError, match="download=True"):
        load_ogb("ogbn-products", tmp_path)
    with pytest.raises(ValueError, match="unknown OGB"):
        load_ogb("ogbn-mag", tmp_path)


def test_recipes_cover_every_dataset():
    for name in NODE_DATASETS:
        r = load_recipe(node_recipe_for(name))
        assert r["task"] == "node"
        cfg = stage_config(r, 0)
        assert {"hidden_channels", "num_layers"} <= set(cfg["model"])
        assert {"lr", "epochs", "mode"} <= set(cfg["train"])
    products = stage_config(load_recipe("ogbn-products"), 1, "binsage")["train"]
    assert products["fanouts"] == [15, 10, 5] and products["schedule"]["type"] == "plateau"


def test_ogb_corrupt_raw_file(tmp_path):
    _ogb_fixture(tmp_path, "ogbn-arxiv")
    (tmp_path / "ogbn_arxiv" / "raw" / "edge.csv.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(ValueError, match="could not read ogbn-arxiv"):
        load_ogb("ogbn-arxiv", tmp_path)


def test_rocauc_with_ties_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    y = torch.tensor([[0], [1], [1], [0], [1], [0], [1]])
    s = torch.tensor([[0.5], [0.5], [0.9], [0.1], [0.5], [0.9], [0.2]])  # many ties
    ref = roc_auc_score(y[:, 0].numpy(), s[:, 0].numpy())
    assert evaluate(s, y, torch.arange(7), "rocauc") == pytest.approx(ref)
