"""Node classification with the one trainer: full batch, mini-batch, distillation, the
cascade of node stages, and the train-node / distill-node commands."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import torch.nn.functional as F
from _graphs import PLANETOID_RAW, sbm

from bingnn.distill.binary_scale import match_binary_scale
from bingnn.distill.cascade import DataCache, run_cascade, run_stage, stage_dir
from bingnn.distill.recipe import load_recipe, stage_config
from bingnn.graphs.datasets import NodeDataset
from bingnn.graphs.node_task import NodeTask
from bingnn.models.gcn import BinGCN
from bingnn.models.graphsage import BinSAGE, GraphSAGE
from bingnn.train.checkpoint import load_checkpoint
from bingnn.train.distributed import DistContext
from bingnn.train.objective import Objective
from bingnn.train.optim import build_optimizer, build_scheduler
from bingnn.train.trainer import fit


def _fit(model, task, epochs, lr, teacher=None, objective=None):
    opt = build_optimizer(model.parameters(), "adam", lr)
    return fit(task, model, objective or Objective(), opt, build_scheduler(opt, None, epochs),
               epochs=epochs, teacher=teacher)


@pytest.mark.parametrize("make", [
    lambda: BinSAGE(8, 32, 2, 3, dropout=0.2, centering="mean"),
    lambda: BinGCN(8, 32, 2, 3, dropout=0.2, centering="mean"),
])
def test_full_batch_binary_training_beats_features_alone(make):
    res = _fit(make(), NodeTask(sbm(), 3), 60, 0.02)
    assert res.record["test"]["acc"] > 0.75  # features alone give about 0.5 here
    assert 1 <= res.record["best_epoch"] <= 60 and len(res.history) == 60
    assert res.history[-1]["loss"] < res.history[0]["loss"]


def test_minibatch_training_with_sampler_and_layerwise_eval():
    task = NodeTask(sbm(), 3, mode="minibatch", fanouts=[5, 5], batch_size=8,
                    eval_mode="layerwise", eval_batch_size=16)
    res = _fit(BinSAGE(8, 32, 2, 3, dropout=0.0, centering="mean"), task, 25, 0.02)
    assert res.record["test"]["acc"] > 0.65
    # the epoch's seed batches cover every training node once, in a seeded order
    batches = task.global_seed_batches(3)
    assert sorted(torch.cat(batches).tolist()) == sorted(task.idx["train"].tolist())
    assert all(torch.equal(a, b) for a, b in zip(batches, task.global_seed_batches(3),
                                                 strict=True))


def _batch(task):
    return next(iter(task.train_batches(1, DistContext())))


def test_kd_objective_is_zero_for_identical_teacher():
    task = NodeTask(sbm(), 3)
    torch.manual_seed(0)
    student = GraphSAGE(8, 16, 2, 3, dropout=0.0, centering="none")
    teacher = GraphSAGE(8, 16, 2, 3, dropout=0.0, centering="none")
    teacher.load_state_dict(student.state_dict())
    b = _batch(task)
    obj = Objective(alpha=1.0, temperature=2.0)
    t_logits, _ = task.forward(teacher, b, False)
    loss, _ = obj(task.forward(student, b, False)[0], b, t_logits)
    assert loss.abs().item() < 1e-6
    with torch.no_grad():
        student.convs[0].lin_l.linear.weight.mul_(-1)
    assert obj(task.forward(student, b, False)[0], b, t_logits)[0] > 1e-4


def test_kd_over_all_nodes_matches_a_plain_computation():
    data = sbm()
    torch.manual_seed(0)
    teacher = GraphSAGE(8, 16, 2, 3, dropout=0.0, centering="none")
    student = BinSAGE(8, 16, 2, 3, dropout=0.0, stage=3)
    task = NodeTask(data, 3, kd_over_all_nodes=True)
    b = _batch(task)
    train = data.train_mask.nonzero().view(-1)
    assert torch.equal(b.ce_rows, train) and b.kd_rows.numel() == data.num_nodes
    s, t = student(data.x, data.edge_index), teacher(data.x, data.edge_index)
    loss, _ = Objective(alpha=0.7, temperature=3.0)(s, b, t.detach())
    ce = F.cross_entropy(s[train], data.y[train])
    kd = 9.0 * F.kl_div(F.log_softmax(s / 3, -1), F.softmax(t / 3, -1), reduction="batchmean")
    assert float(loss) == pytest.approx(float(0.3 * ce + 0.7 * kd), rel=1e-5)
    # KD on the labelled nodes only (the paper's setting)
    only_train = _batch(NodeTask(data, 3))
    assert torch.equal(only_train.kd_rows, train)


@pytest.mark.parametrize("mode", ["full", "minibatch"])
def test_kd_over_all_nodes_transfers_the_teacher_beyond_the_labels(mode):
    """Three labelled nodes: pure KD on them copies little of the teacher; over every node
    the student agrees with the teacher on most unlabelled nodes."""
    data = sbm()
    few = torch.zeros(data.num_nodes, dtype=torch.bool)
    few[data.train_mask.nonzero().view(-1)[:3]] = True
    data.train_mask = few
    torch.manual_seed(0)
    teacher = GraphSAGE(8, 16, 2, 3, dropout=0.0, centering="none")
    with torch.no_grad():  # a confident, non-trivial teacher
        for p in teacher.parameters():
            p.mul_(3.0)
        t_pred = teacher(data.x, data.edge_index).argmax(-1)
    agree = {}
    for every in (False, True):
        torch.manual_seed(1)
        student = GraphSAGE(8, 16, 2, 3, dropout=0.0, centering="none")
        task = NodeTask(data, 3, mode=mode, fanouts=[-1, -1], batch_size=32,
                        kd_over_all_nodes=every)
        _fit(student, task, 60, 0.02, teacher=teacher, objective=Objective(alpha=1.0))
        student.eval()  # final weights: the best-validation ones follow the 3 labels
        with torch.no_grad():
            s_pred = student(data.x, data.edge_index).argmax(-1)
        agree[every] = float((s_pred == t_pred)[~few].float().mean())
    assert agree[True] > 0.9
    assert agree[True] > agree[False] + 0.1


def test_lsp_on_graph_edges_enters_the_loss():
    task = NodeTask(sbm(), 3)
    torch.manual_seed(0)
    teacher = GraphSAGE(8, 16, 3, 3, dropout=0.0)
    student = BinSAGE(8, 16, 3, 3, dropout=0.0, stage=2)
    b = _batch(task)
    t_logits, t_struct = task.forward(teacher.eval(), b, True)
    s_logits, s_struct = task.forward(student, b, True)
    assert len(s_struct) == 2 and s_struct[0].edge_index is b.inputs[1]  # PyG orientation
    base, _ = Objective(alpha=0.5)(s_logits, b, t_logits.detach())
    with_lsp, parts = Objective(alpha=0.5, lsp_weight=100.0)(s_logits, b, t_logits.detach(),
                                                             s_struct, t_struct)
    assert parts["lsp"] > 0 and with_lsp > base
    with_lsp.backward()
    assert student.convs[0].lin_l.linear.weight.grad.abs().sum() > 0


def test_match_binary_scale_folds_mean_abs_weight():
    torch.manual_seed(0)
    teacher = BinGCN(6, 8, 2, 3, stage=2)
    student = BinGCN(6, 8, 2, 3, stage=3)
    student.load_state_dict(teacher.state_dict())
    w = student.convs[0].block.linear.weight.detach().clamp(-1, 1)
    assert match_binary_scale(student, teacher) == 2
    torch.testing.assert_close(student.convs[0].block.rescale.channel_scale.detach(),
                               w.abs().mean(1))
    assert match_binary_scale(BinGCN(6, 8, 2, 3, stage=3), BinGCN(6, 8, 2, 3, stage=3)) == 0


def _sbm_recipe(epochs=4, hidden=16):
    r = load_recipe("planetoid")
    r["train"]["epochs"] = epochs
    r["model"]["hidden_channels"] = hidden
    r["variants"] = ["binsage"]
    r["model"]["centering"] = "mean"
    return r


def _cache(recipe):
    data = DataCache()
    data.put(stage_config(recipe, 0, "binsage"), NodeDataset(sbm(), 3, False, "acc"))
    return data


def test_node_cascade_students_start_from_their_teachers(tmp_path):
    recipe = _sbm_recipe()
    rows = run_cascade(recipe, tmp_path, "cpu", progress=False, data=_cache(recipe))
    assert [(r["stage"], r["variant"]) for r in rows] == [
        (0, "graphsage"), (1, "binsage"), (2, "binsage"), (3, "binsage")]
    for s in range(4):
        assert 0.0 <= rows[s]["test_acc"] <= 1.0
    # each student started from the weights of its teacher's best epoch: with lr 0 for
    # stage 1, its first epoch's weights are its teacher's exactly
    best0 = load_checkpoint(stage_dir(tmp_path, 0, "graphsage") / "best.pt")["model"]
    frozen = _sbm_recipe()
    frozen["stage1"] = {"lr": 1e-12, "epochs": 1}
    out = tmp_path / "frozen"
    (out / "graphsage").mkdir(parents=True)
    import shutil

    shutil.copytree(stage_dir(tmp_path, 0, "graphsage"), stage_dir(out, 0, "graphsage"))
    run_cascade(frozen, out, "cpu", progress=False, data=_cache(frozen), last_stage=1)
    s1 = load_checkpoint(stage_dir(out, 1, "binsage") / "best.pt")["model"]
    for k, v in best0.items():
        torch.testing.assert_close(s1[k], v, atol=1e-8, rtol=0, msg=k)
    # finished stages are read back, not retrained
    again = run_cascade(recipe, tmp_path, "cpu", progress=False, data=_cache(recipe))
    assert again == rows


def test_node_stage_rejects_a_teacher_of_another_layout(tmp_path):
    recipe = _sbm_recipe()
    data = _cache(recipe)
    run_stage(stage_config(recipe, 0, "binsage"), tmp_path / "t", "cpu", progress=False,
              data=data)
    wide = _sbm_recipe(hidden=32)
    with pytest.raises(ValueError, match="layout"):
        run_stage(stage_config(wide, 1, "binsage"), tmp_path / "s", "cpu",
                  teacher_path=tmp_path / "t" / "best.pt", progress=False, data=_cache(wide))
    assert not (tmp_path / "s").exists()  # nothing written


needs_planetoid = pytest.mark.skipif(
    not (PLANETOID_RAW / "ind.cora.x").is_file(), reason="Planetoid raw files not available"
)


@needs_planetoid
def test_cli_train_node_and_distill_node(tmp_path, capsys, monkeypatch):
    from bingnn.cli.main import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BINGNN_DATA", str(tmp_path / "cache"))
    common = ["--dataset", "cora", "--raw-dir", str(PLANETOID_RAW), "--epochs", "2",
              "--hidden", "8", "--no-progress", "--threads", "1"]
    out = tmp_path / "train"
    assert main(["train-node", *common, "--model", "bingcn", "--seeds", "2",
                 "--out", str(out)]) == 0
    # the raw files went to the data root, not into ./data of the current folder
    assert (tmp_path / "cache" / "Cora" / "raw" / "ind.cora.graph").is_file()
    assert not (tmp_path / "data").exists()
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["seed"] for r in rows] == ["0", "1", "mean", "std"]
    tests = [float(r["test_acc"]) for r in rows[:2]]
    assert float(rows[2]["test_acc"]) == pytest.approx(sum(tests) / 2, abs=1e-6)
    assert (out / "accuracy.png").stat().st_size > 0
    cfg = json.loads((out / "seed0" / "config.json").read_text())
    assert cfg["model"]["hidden_channels"] == 8 and cfg["model"]["stage"] == 3
    assert cfg["recipe"] == "planetoid" and cfg["train"]["epochs"] == 2
    assert "+-" in capsys.readouterr().out
    # re-running resumes: finished seeds are not retrained
    mtime = (out / "seed0" / "done.json").stat().st_mtime_ns
    assert main(["train-node", *common, "--model", "bingcn", "--seeds", "2", "--out",
                 str(out)]) == 0
    assert (out / "seed0" / "done.json").stat().st_mtime_ns == mtime

    teacher = tmp_path / "float"
    assert main(["train-node", *common, "--model", "gcn", "--out", str(teacher)]) == 0
    dout = tmp_path / "distill"
    assert main(["distill-node", *common, "--model", "bingcn", "--teacher",
                 str(teacher / "seed0" / "best.pt"), "--out", str(dout)]) == 0
    rows = list(csv.DictReader(open(dout / "results.csv")))
    assert {r["stage"] for r in rows} == {"0", "1", "2", "3"}
    # stage 0 took the given teacher: its test score is the teacher run's
    t_rec = json.loads((teacher / "seed0" / "done.json").read_text())
    s0 = next(r for r in rows if r["seed"] == "0" and r["stage"] == "0")
    assert float(s0["test_acc"]) == pytest.approx(t_rec["test"]["acc"])
    used = json.loads((dout / "seed0" / "bingcn" / "stage1" / "config.json").read_text())
    assert (used["loss"]["kd_nodes"], used["loss"]["alpha"]) == ("all", 0.9)  # the recipe
    paper = tmp_path / "distill-paper"
    assert main(["distill-node", *common, "--model", "bingcn", "--teacher",
                 str(teacher / "seed0" / "best.pt"), "--out", str(paper), "--last-stage", "1",
                 "--kd-nodes", "train", "--kd-alpha", "0.1"]) == 0
    used = load_checkpoint(paper / "seed0" / "bingcn" / "stage1" / "checkpoint.pt")["config"]
    assert (used["loss"]["kd_nodes"], used["loss"]["alpha"]) == ("train", 0.1)
    assert not (paper / "seed0" / "bingcn" / "stage2").exists()
    assert main(["eval", str(out / "seed0" / "best.pt")]) == 2
    assert "node classifier" in capsys.readouterr().err
    assert main(["train-node", *common, "--model", "nope"]) == 2
    assert main(["distill-node", *common, "--model", "bingcn", "--teacher",
                 str(tmp_path / "missing.pt")]) == 2
    # a binary model is no teacher
    assert main(["distill-node", *common, "--model", "bingcn", "--teacher",
                 str(out / "seed0" / "best.pt"), "--out", str(tmp_path / "x")]) == 2
    assert "stage 0" in capsys.readouterr().err


def test_node_task_of_run_seed_s_uses_the_split_of_seed_s():
    from bingnn.distill.cascade import build_task
    from bingnn.distill.recipe import apply_overrides

    data = sbm()
    n = data.num_nodes

    def split(seed):  # a different partition per seed, as Facebook's and Actor's are
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        masks = [torch.zeros(n, dtype=torch.bool) for _ in range(3)]
        for m, part in zip(masks, (order[:30], order[30:50], order[50:]), strict=True):
            m[part] = True
        return tuple(masks)

    recipe = _sbm_recipe()
    for seed in (0, 3):
        cfg = stage_config(apply_overrides(recipe, seed=seed), 0, "binsage")
        cache = DataCache()
        cache.put(cfg, NodeDataset(data, 3, False, "acc", split_of_seed=split))
        task = build_task(cfg, DistContext(), data=cache)
        for name, mask in zip(("train", "val", "test"), split(seed), strict=True):
            assert torch.equal(task.idx[name], mask.nonzero().view(-1))
    assert torch.equal(data.train_mask, sbm().train_mask)  # the cached graph is untouched
