"""Actor through PyG's loader, offline from ../shared/data/actor, and its ten standard splits."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from _graphs import ACTOR_RAW

from bingnn.graphs.actor import RAW_FILES, actor_split, load_actor
from bingnn.graphs.datasets import load_node_dataset

ACTOR = ACTOR_RAW
needs_actor = pytest.mark.skipif(
    not (ACTOR / "out1_graph_edges.txt").is_file(),
    reason="../shared/data/actor not available")


@pytest.fixture(scope="module")
def actor_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("actor")
    load_actor(root, raw_dir=ACTOR)
    return root


@needs_actor
def test_actor_loads_offline_with_pyg_sizes(actor_root):
    assert (actor_root / "actor" / "raw" / "film_split_0.6_0.2_9.npz").is_file()
    d = load_actor(actor_root)  # processed already: no raw_dir needed any more
    assert d.num_nodes == 7600 and d.x.shape == (7600, 932) and d.edge_index.shape == (2, 30019)
    assert set(d.x.unique().tolist()) == {0.0, 1.0}
    assert int(d.y.max()) + 1 == 5 and int(d.y.min()) == 0
    assert d.train_mask.shape == (7600, 10)
    raw_rows = len((ACTOR / "out1_graph_edges.txt").read_text().splitlines()) - 1
    assert raw_rows == 33391  # the file's rows; PyG keeps 30,019 distinct directed edges


@needs_actor
def test_actor_standard_splits_match_the_files(actor_root):
    d = load_actor(actor_root)
    for i in (0, 7, 9):
        train, val, test = actor_split(d, i)
        with np.load(ACTOR / f"film_split_0.6_0.2_{i}.npz") as z:
            for mask, key in ((train, "train_mask"), (val, "val_mask"), (test, "test_mask")):
                assert np.array_equal(mask.numpy(), z[key].astype(bool))
        assert [int(m.sum()) for m in (train, val, test)] == [3648, 2432, 1520]
        assert not (train & val).any() and not (train & test).any() and not (val & test).any()
    assert not torch.equal(actor_split(d, 0)[0], actor_split(d, 1)[0])
    with pytest.raises(ValueError, match="10 standard splits.*got seed 10"):
        actor_split(d, 10)


@needs_actor
def test_actor_node_dataset_seed_i_uses_split_i(actor_root):
    ds = load_node_dataset("actor", actor_root)
    full = load_actor(actor_root)
    assert ds.num_classes == 5 and ds.data.x.layout == torch.sparse_csr
    assert torch.equal(ds.data.x.to_dense(), full.x)
    for seed in (0, 4):
        d = ds.for_seed(seed)
        assert torch.equal(d.val_mask, full.val_mask[:, seed])
        assert d.train_mask.dim() == 1
    assert torch.equal(ds.data.test_mask, full.test_mask[:, 0])  # the default is split 0
    with pytest.raises(ValueError, match="run seeds 0-9"):
        ds.for_seed(-1)


def test_actor_missing_or_damaged_raw_files(tmp_path):
    with pytest.raises(ValueError, match="Actor raw files missing.*--raw-dir"):
        load_actor(tmp_path)
    with pytest.raises(ValueError, match="lacks the Actor raw files"):
        load_actor(tmp_path, raw_dir=tmp_path)


@needs_actor
@pytest.mark.parametrize("name,content", [
    ("out1_graph_edges.txt", "node_id\tnode_id\n723\tseven\n"),
    ("film_split_0.6_0.2_3.npz", "PK\x03\x04 truncated"),
])
def test_actor_damaged_raw_file_is_one_clear_error(tmp_path, name, content):
    src = tmp_path / "src"
    src.mkdir()
    for f in RAW_FILES:
        shutil.copyfile(ACTOR / f, src / f)
    (src / name).write_text(content)
    with pytest.raises(ValueError, match="could not read Actor") as err:
        load_actor(tmp_path / "root", raw_dir=src)
    assert "\n" not in str(err.value)


@needs_actor
def test_cli_train_node_on_actor_runs_one_split_per_seed(actor_root, tmp_path, capsys):
    import csv

    from bingnn.cli.main import main

    common = ["--dataset", "actor", "--root", str(actor_root), "--epochs", "2", "--hidden", "8",
              "--no-progress", "--threads", "1", "--model", "gcn"]
    out = tmp_path / "run"
    assert main(["train-node", *common, "--seeds", "2", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["seed"] for r in rows] == ["0", "1", "mean", "std"]
    # seeds beyond the ten standard splits are refused before anything trains
    late = tmp_path / "late"
    assert main(["train-node", *common, "--seed", "9", "--seeds", "2", "--out", str(late)]) == 2
    assert "--seed 0 --seeds 10 at most" in capsys.readouterr().err
    assert not (late / "seed9").exists()
