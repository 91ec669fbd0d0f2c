"""The MUSAE-format reader: the real Facebook Page-Page files, the download path on fixtures,
and one clear error for every kind of damaged release file."""

from __future__ import annotations

import dataclasses
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from _graphs import FACEBOOK_RAW

from bingnn.graphs.datasets import load_node_dataset
from bingnn.graphs.musae import (
    MUSAE,
    download_musae,
    find_musae_files,
    load_musae,
    read_musae,
)
from bingnn.graphs.splits import stratified_split

FACEBOOK = FACEBOOK_RAW
needs_facebook = pytest.mark.skipif(
    not (FACEBOOK / "facebook_edges.csv").is_file(),
    reason="../shared/data/facebook not available")
FB_CLASSES = {"company": 6495, "government": 6880, "politician": 5768, "tvshow": 3327}


@pytest.fixture(scope="module")
def facebook(tmp_path_factory):
    root = tmp_path_factory.mktemp("fb")
    return root, load_musae("facebook", root, raw_dir=FACEBOOK)


# ----------------------------------------------------------------------------- real files


@needs_facebook
def test_facebook_counts_and_edges(facebook):
    _, d = facebook
    assert d.num_nodes == 22_470 and d.x.shape == (22_470, 4_714)
    ei = d.edge_index
    assert ei.dtype == torch.int64 and ei.shape == (2, 341_825)
    src, dst = ei
    # 171,002 undirected edges of the release: 170,823 pairs i < j (both directions) + 179 loops
    assert int((src < dst).sum()) == 170_823 and int((src == dst).sum()) == 179
    key = (src * 22_470 + dst).numpy()
    assert bool((key[1:] > key[:-1]).all())  # sorted by (source, target), no duplicates
    # undirected: the reversed edges are the same set
    assert np.array_equal(np.sort((dst * 22_470 + src).numpy()), key)
    # the same edge set as the release file, read independently
    raw = np.loadtxt(FACEBOOK / "facebook_edges.csv", delimiter=",", skiprows=1, dtype=np.int64)
    lo, hi = raw.min(1), raw.max(1)
    upper = (src <= dst).numpy()
    assert np.array_equal(np.unique(lo * 22_470 + hi), key[upper])


@needs_facebook
def test_facebook_features_are_sparse_binary_and_match_json(facebook):
    _, d = facebook
    x = d.x
    assert x.layout == torch.sparse_csr and x.dtype == torch.float32
    assert x.values().numel() == 314_583 and bool((x.values() == 1).all())
    assert x.values().numel() / (22_470 * 4_714) < 0.003  # 0.3% of the entries are ones
    table = json.loads((FACEBOOK / "facebook_features.json").read_text())
    crow, col = x.crow_indices(), x.col_indices()
    for node in (0, 554, 10_772, 22_469):
        assert col[crow[node]:crow[node + 1]].tolist() == sorted(set(table[str(node)]))


@needs_facebook
def test_facebook_labels(facebook):
    _, d = facebook
    assert d.class_names == sorted(FB_CLASSES)
    assert d.y.dtype == torch.int64 and int(d.y.min()) == 0 and int(d.y.max()) == 3
    assert torch.bincount(d.y).tolist() == [FB_CLASSES[c] for c in d.class_names]
    import csv

    with open(FACEBOOK / "facebook_target.csv", encoding="utf-8") as f:
        rows = {int(r["id"]): r["page_type"] for r in csv.DictReader(f)}
    for node in (0, 1, 22_469):
        assert d.class_names[int(d.y[node])] == rows[node]


@needs_facebook
def test_facebook_split_sizes_stratification_and_determinism(facebook):
    _, d = facebook
    masks = d.train_mask, d.val_mask, d.test_mask
    assert [int(m.sum()) for m in masks] == [13_482, 4_494, 4_494]
    assert not (masks[0] & masks[1]).any() and not (masks[0] & masks[2]).any()
    assert not (masks[1] & masks[2]).any() and bool((masks[0] | masks[1] | masks[2]).all())
    for c, n in enumerate(torch.bincount(d.y).tolist()):  # every class 60/20/20 of itself
        train, val = int(masks[0][d.y == c].sum()), int(masks[1][d.y == c].sum())
        assert train == int(0.6 * n + 0.5) and val == int(0.2 * n + 0.5)
    again = stratified_split(d.y.numpy(), 0)
    assert all(np.array_equal(a, m.nonzero().view(-1).numpy())
               for a, m in zip(again, masks, strict=True))
    other = stratified_split(d.y.numpy(), 1)
    assert not np.array_equal(other[0], again[0])


@needs_facebook
def test_facebook_node_dataset_splits_per_seed_and_normalisation(facebook):
    root, d = facebook
    ds = load_node_dataset("facebook", root)
    assert ds.num_classes == 4 and ds.metric == "acc" and ds.data.x.layout == torch.sparse_csr
    for seed in (0, 3):
        ref = stratified_split(d.y.numpy(), seed)
        got = ds.for_seed(seed)
        assert np.array_equal(got.test_mask.nonzero().view(-1).numpy(), ref[2])
        assert got.x is ds.data.x  # a shallow copy: the features are shared
    norm = load_node_dataset("facebook", root, normalize_features=True).data.x
    sums = norm.to_dense().sum(1)
    torch.testing.assert_close(sums[sums > 0], torch.ones(int((sums > 0).sum())))


@needs_facebook
def test_facebook_cache_and_snap_file_names(tmp_path):
    # SNAP's archive names the files musae_facebook_*: the reader takes either stem
    snap = tmp_path / "snap"
    snap.mkdir()
    for kind in ("edges.csv", "target.csv", "features.json"):
        shutil.copyfile(FACEBOOK / f"facebook_{kind}", snap / f"musae_facebook_{kind}")
    d = load_musae("facebook", tmp_path / "root", raw_dir=snap)
    assert sorted((tmp_path / "root" / "facebook" / "raw").iterdir())[0].name.startswith("musae")
    cache = tmp_path / "root" / "facebook" / "processed" / "graph.npz"
    assert cache.is_file()
    # the cache serves once the raw files are gone
    shutil.rmtree(tmp_path / "root" / "facebook" / "raw")
    again = load_musae("facebook", tmp_path / "root")
    assert torch.equal(again.edge_index, d.edge_index) and torch.equal(again.y, d.y)


@needs_facebook
@pytest.mark.parametrize("damage,match", [
    ("truncate_target_rows", "22,469 nodes, but the Facebook Page-Page release has 22,470"),
    ("truncate_edge_rows", "undirected edges, but the Facebook Page-Page release has 171,002"),
    ("truncate_edges_mid_line", "line 171003"),
    ("truncate_features", "not valid JSON"),
    ("lfs_pointer", "Git LFS pointer"),
])
def test_facebook_damaged_release_files(tmp_path, damage, match):
    raw = tmp_path / "facebook" / "raw"
    raw.mkdir(parents=True)
    for f in FACEBOOK.glob("facebook_*"):
        shutil.copyfile(f, raw / f.name)
    if damage == "truncate_target_rows":
        lines = (raw / "facebook_target.csv").read_text(encoding="utf-8").splitlines(True)
        # drop the row of the largest id, so that the rest still reads as ids 0..n-1
        last = next(i for i, r in enumerate(lines) if r.startswith("22469,"))
        del lines[last]
        (raw / "facebook_target.csv").write_text("".join(lines), encoding="utf-8")
        (raw / "facebook_edges.csv").write_text("id_1,id_2\n0,1\n")
    elif damage == "truncate_edge_rows":
        lines = (raw / "facebook_edges.csv").read_text().splitlines(True)
        (raw / "facebook_edges.csv").write_text("".join(lines[:-1000]))
    elif damage == "truncate_edges_mid_line":
        data = (raw / "facebook_edges.csv").read_bytes().rstrip(b"\n")
        (raw / "facebook_edges.csv").write_bytes(data[:data.rindex(b",") + 1])
    elif damage == "truncate_features":
        data = (raw / "facebook_features.json").read_bytes()
        (raw / "facebook_features.json").write_bytes(data[: len(data) // 2])
    else:
        (raw / "facebook_edges.csv").write_text(
            "version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1882610\n")
    with pytest.raises(ValueError, match=match) as err:
        load_musae("facebook", tmp_path)
    assert "--download" in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------- fixtures

#: a Facebook-like release without the real release's sizes (so a tiny graph passes)
TINY = dataclasses.replace(MUSAE["facebook"], num_nodes=None, num_edges=None,
                           num_features=None, num_classes=None)
TARGET = ('id,facebook_id,page_name,page_type\n0,11,"Page, with comma",tvshow\n'
          "1,12,B,company\n2,13,C,government\n3,14,D,company\n4,15,E,politician\n")
# duplicates both ways, a self-loop, and node 4 without edges
EDGES = "id_1,id_2\n0,1\n1,0\n1,2\n2,3\n3,3\n0,1\n"
FEATURES = {"0": [3, 1, 1], "1": [], "2": [0], "3": [5, 2], "4": [4]}


def _write_release(folder: Path, stem: str = "facebook", target: str = TARGET,
                   edges: str = EDGES, features=None, feature_suffix: str = "_features.json"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}_target.csv").write_text(target, encoding="utf-8")
    (folder / f"{stem}_edges.csv").write_text(edges)
    (folder / f"{stem}{feature_suffix}").write_text(
        json.dumps(FEATURES if features is None else features))
    return folder


def test_fixture_release_is_read_exactly(tmp_path):
    g = read_musae(_write_release(tmp_path), TINY)
    assert g.class_names == ["company", "government", "politician", "tvshow"]
    assert g.y.tolist() == [3, 0, 1, 0, 2]
    assert g.edge_index.T.tolist() == [[0, 1], [1, 0], [1, 2], [2, 1], [2, 3], [3, 2], [3, 3]]
    assert g.num_undirected_edges == 4 and g.num_features == 6
    dense = np.zeros((5, 6))
    for node, feats in FEATURES.items():
        dense[int(node), feats] = 1
    d = g.to_data(split_seed=0, fractions=(0.6, 0.2, 0.2))
    np.testing.assert_array_equal(d.x.to_dense().numpy(), dense)
    assert d.x.crow_indices().tolist() == [0, 2, 2, 3, 5, 6]


def _zip_release(path: Path, folder: str, stem: str, **kw) -> Path:
    src = _write_release(path.parent / "zipsrc", stem=stem, **kw)
    with zipfile.ZipFile(path, "w") as zf:
        for f in src.iterdir():
            zf.write(f, f"{folder}/{f.name}")
    return path


def test_download_from_zip_and_folder_urls(tmp_path):
    archive = _zip_release(tmp_path / "facebook_large.zip", "facebook_large", "musae_facebook")
    raw = download_musae(TINY, tmp_path / "root", url=archive.as_uri(), progress=False)
    assert sorted(p.name for p in raw.iterdir()) == [
        "musae_facebook_edges.csv", "musae_facebook_features.json", "musae_facebook_target.csv"]
    d = load_musae(TINY, tmp_path / "root")
    assert d.num_nodes == 5 and d.edge_index.size(1) == 7
    # a folder URL ending in '/' (the authors' repository layout, stem "facebook")
    folder = _write_release(tmp_path / "repo" / "facebook_large")
    d2 = load_musae(TINY, tmp_path / "root2", download=True, url=folder.as_uri() + "/",
                    progress=False)
    assert torch.equal(d2.edge_index, d.edge_index) and torch.equal(d2.y, d.y)
    assert not list((tmp_path / "root").glob("facebook/.download-*"))  # temp folders gone


def test_download_failures_are_clear_and_keep_good_files(tmp_path):
    root = tmp_path / "root"
    good = _zip_release(tmp_path / "good.zip", "x", "facebook")
    download_musae(TINY, root, url=good.as_uri(), progress=False)
    before = {p.name: p.read_bytes() for p in (root / "facebook" / "raw").iterdir()}
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("x/facebook_edges.csv", EDGES)
        zf.writestr("x/facebook_target.csv", TARGET)
    with pytest.raises(ValueError, match="holds no musae_facebook_features.json or facebook_fe"):
        download_musae(TINY, root, url=bad.as_uri(), progress=False)
    (tmp_path / "notzip.zip").write_bytes(b"<html>moved</html>")
    with pytest.raises(ValueError, match="not a valid zip archive"):
        download_musae(TINY, root, url=(tmp_path / "notzip.zip").as_uri(), progress=False)
    broken = _zip_release(tmp_path / "broken.zip", "x", "facebook", edges="id_1,id_2\n0,9\n")
    with pytest.raises(ValueError, match="node id 9 is outside the 5 nodes"):
        download_musae(TINY, root, url=broken.as_uri(), progress=False)
    with pytest.raises(OSError, match="could not download"):
        download_musae(TINY, root, url=(tmp_path / "missing.zip").as_uri(), progress=False)
    after = {p.name: p.read_bytes() for p in (root / "facebook" / "raw").iterdir()}
    assert after == before


def test_cache_is_ignored_when_a_raw_file_changes(tmp_path):
    _write_release(tmp_path / "facebook" / "raw")
    first = load_musae(TINY, tmp_path)
    assert (tmp_path / "facebook" / "processed" / "graph.npz").is_file()
    target = tmp_path / "facebook" / "raw" / "facebook_target.csv"
    target.write_text(TARGET.replace("1,12,B,company", "1,12,B,tvshow"), encoding="utf-8")
    changed = load_musae(TINY, tmp_path)
    assert (changed.y != first.y).nonzero().view(-1).tolist() == [1]
    (tmp_path / "facebook" / "processed" / "graph.npz").write_bytes(b"garbage")
    assert torch.equal(load_musae(TINY, tmp_path).y, changed.y)  # unreadable cache: re-parse


def test_missing_release_is_clear(tmp_path):
    with pytest.raises(ValueError, match="not in .*--raw-dir.*--download"):
        load_musae("facebook", tmp_path)
    with pytest.raises(ValueError, match="lacks the Facebook Page-Page file"):
        find_musae_files(tmp_path, "facebook")
    with pytest.raises(ValueError, match="unknown MUSAE-format dataset"):
        load_musae("myspace", tmp_path)


@pytest.mark.parametrize("file,content,match", [
    ("edges", "id_1,id_2\n0,1\n2,x\n", r"line 3: node id 'x' is not an integer"),
    ("edges", "id_1,id_2\n0,1\n2\n", r"line 3: expected two node ids"),
    ("edges", "0,1\n1,2\n", "expected a header of two column names"),
    ("edges", "id_1,id_2\n0,-1\n", "node id -1 is outside"),
    ("edges", "", "is empty"),
    ("target", "id,facebook_id,page_name\n0,1,a\n", r"no column \['page_type'\]"),
    ("target", "id,facebook_id,page_name,page_type\n0,1,a,tvshow\n2,1,b,company\n",
     "are not 0..1 each once"),
    ("target", "id,facebook_id,page_name,page_type\n0,1,a,tvshow\n1,2\n", "line 3: 4 columns"),
    ("target", "id,facebook_id,page_name,page_type\n", "no nodes"),
    ("features", '{"0": [1], "1": [', "not valid JSON"),
    ("features", '{"0": [1.5]}', "feature ids must be non-negative integers"),
    ("features", '{"0": [-2]}', "feature ids must be non-negative integers"),
    ("features", '{"0": [[1]]}', "feature ids must be non-negative integers"),
    ("features", '{"0": 3}', "expected a list of feature ids"),
    ("features", '{"77": [1]}', "key '77' is not one of the 5 node ids"),
    ("features", "[1, 2]", "expected an object"),
])
def test_damaged_fixture_files_give_one_clear_error(tmp_path, file, content, match):
    folder = _write_release(tmp_path)
    suffix = "_features.json" if file == "features" else f"_{file}.csv"
    (folder / f"facebook{suffix}").write_text(content)
    with pytest.raises(ValueError, match=match) as err:
        read_musae(folder, TINY)
    assert str(folder) in str(err.value) and "\n" not in str(err.value)


def test_other_musae_settings_twitch_and_wikipedia(tmp_path):
    # Twitch: node ids in column new_id, labels True/False, features in <stem>.json
    twitch = ("id,days,mature,views,partner,new_id\n900,1,True,5,False,2\n901,1,False,5,False,0\n"
              "902,3,False,5,False,4\n903,1,True,5,False,1\n904,9,True,1,False,3\n")
    folder = _write_release(tmp_path / "de", stem="musae_DE", target=twitch,
                            feature_suffix=".json")
    g = read_musae(folder, "twitch-de")
    assert g.class_names == ["False", "True"] and g.y.tolist() == [0, 1, 1, 1, 0]
    # Wikipedia: a continuous target cut into 5 quantile classes
    wiki = "id,target\n" + "".join(f"{i},{v}\n" for i, v in enumerate([50, 10, 40, 20, 30]))
    folder = _write_release(tmp_path / "w", stem="chameleon", target=wiki)
    g = read_musae(folder, "wikipedia-chameleon")
    assert g.y.tolist() == [4, 0, 3, 1, 2] and len(g.class_names) == 5
    # integer labels sort numerically (10 after 9)
    numeric = "id,target\n" + "".join(f"{i},{v}\n" for i, v in enumerate([10, 9, 10, 2, 9]))
    folder = _write_release(tmp_path / "dz", stem="deezer_europe", target=numeric,
                            edges="node_1,node_2\n0,1\n")
    g = read_musae(folder, "deezer-europe")
    assert g.class_names == ["2", "9", "10"] and g.y.tolist() == [2, 1, 2, 0, 1]
