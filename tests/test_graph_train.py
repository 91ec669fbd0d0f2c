"""Node trainer (full batch, mini-batch, resume), distillation cascade and the CLI commands."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Data

from bingnn.graphs.node_distill import default_stage_configs, match_binary_scale, run_cascade
from bingnn.graphs.node_trainer import Objective, TrainConfig, fit
from bingnn.models.gcn import BinGCN
from bingnn.models.graphsage import BinSAGE, GraphSAGE

PLANETOID_RAW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "planetoid"


def _sbm(n: int = 90, classes: int = 3, feats: int = 8, seed: int = 0) -> Data:
    """Homophilous graph with weakly informative features: neighbours help."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = 0.6 * F.one_hot(y, feats).float() + torch.randn(n, feats, generator=g)
    p = torch.where(y[:, None] == y[None, :], 0.12, 0.01)
    adj = torch.rand(n, n, generator=g) < p
    adj = adj | adj.t()
    adj.fill_diagonal_(False)
    idx = torch.randperm(n, generator=g)
    masks = {k: torch.zeros(n, dtype=torch.bool) for k in ("train", "val", "test")}
    masks["train"][idx[:30]] = True
    masks["val"][idx[30:50]] = True
    masks["test"][idx[50:]] = True
    return Data(x=x, y=y, edge_index=adj.nonzero().t(), train_mask=masks["train"],
                val_mask=masks["val"], test_mask=masks["test"])


@pytest.mark.parametrize("make", [
    lambda: BinSAGE(8, 32, 2, 3, dropout=0.2, centering="mean"),
    lambda: BinGCN(8, 32, 2, 3, dropout=0.2, centering="mean"),
])
def test_full_batch_binary_training_beats_features_alone(make):
    data = _sbm()
    res = fit(make(), data, TrainConfig(epochs=60, lr=0.02, weight_decay=0.0))
    assert res.test > 0.75  # features alone give about 0.5 here
    assert 1 <= res.best_epoch <= 60 and len(res.history) == 60
    assert res.history[-1]["loss"] < res.history[0]["loss"]


def test_minibatch_training_with_sampler_and_layerwise_eval():
    data = _sbm()
    cfg = TrainConfig(epochs=25, lr=0.02, weight_decay=0.0, mode="minibatch", fanouts=[5, 5],
                      batch_size=8, eval_mode="layerwise", eval_batch_size=16,
                      sampler_backend="csr")
    res = fit(BinSAGE(8, 32, 2, 3, dropout=0.0, centering="mean"), data, cfg)
    assert res.test > 0.65


def test_resume_continues_exactly(tmp_path):
    data = _sbm()
    cfg = TrainConfig(epochs=6, lr=0.01, weight_decay=1e-4, mode="minibatch", fanouts=[3, 3],
                      batch_size=10)

    def model():
        torch.manual_seed(0)
        return BinSAGE(8, 16, 2, 3, dropout=0.3)

    straight = fit(model(), data, cfg, out_dir=tmp_path / "a")
    fit(model(), data, TrainConfig(**{**cfg.__dict__, "epochs": 3}), out_dir=tmp_path / "b")
    resumed_model = model()
    resumed = fit(resumed_model, data, cfg, out_dir=tmp_path / "b", resume=True)
    assert [r["loss"] for r in resumed.history] == pytest.approx(
        [r["loss"] for r in straight.history])
    for k, v in straight.state_dict.items():
        torch.testing.assert_close(resumed.state_dict[k], v)
    with open(tmp_path / "b" / "metrics.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(1, 7))


def test_kd_objective_is_zero_for_identical_teacher():
    data = _sbm()
    torch.manual_seed(0)
    student = GraphSAGE(8, 16, 2, 3, dropout=0.0, centering="none")
    teacher = GraphSAGE(8, 16, 2, 3, dropout=0.0, centering="none")
    teacher.load_state_dict(student.state_dict())
    cfg = TrainConfig(kd_alpha=1.0, kd_temperature=2.0)
    rows = torch.arange(30)
    loss = Objective(cfg, teacher)(student, data.x, data.edge_index, data.y, rows)
    assert loss.abs().item() < 1e-6
    with torch.no_grad():
        student.convs[0].lin_l.linear.weight.mul_(-1)
    assert Objective(cfg, teacher)(student, data.x, data.edge_index, data.y, rows) > 1e-4


def test_kd_over_all_nodes_matches_a_plain_computation():
    data = _sbm()
    torch.manual_seed(0)
    teacher = GraphSAGE(8, 16, 2, 3, dropout=0.0, centering="none")
    student = BinSAGE(8, 16, 2, 3, dropout=0.0, stage=3)
    train, every = torch.arange(30), torch.arange(data.num_nodes)
    cfg = TrainConfig(kd_alpha=0.7, kd_temperature=3.0, kd_nodes="all")
    loss = Objective(cfg, teacher)(student, data.x, data.edge_index, data.y, train,
                                   kd_rows=every)
    with torch.no_grad():
        s, t = student(data.x, data.edge_index), teacher(data.x, data.edge_index)
    ce = F.cross_entropy(s[train], data.y[train])
    kd = 9.0 * F.kl_div(F.log_softmax(s / 3, -1), F.softmax(t / 3, -1), reduction="batchmean")
    assert float(loss) == pytest.approx(float(0.3 * ce + 0.7 * kd), rel=1e-5)
    # a batch without labelled nodes still learns from the teacher
    only_kd = Objective(cfg, teacher)(student, data.x, data.edge_index, data.y,
                                      torch.arange(0), kd_rows=every)
    assert float(only_kd) == pytest.approx(float(0.7 * kd), rel=1e-5)
    only_kd.backward()
    assert student.convs[0].lin_l.linear.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["full", "minibatch"])
def test_kd_over_all_nodes_transfers_the_teacher_beyond_the_labels(mode):
    """Three labelled nodes: pure KD on them copies little of the teacher; over every node
    the student agrees with the teacher on most unlabelled nodes."""
    data = _sbm()
    few = torch.zeros(data.num_nodes, dtype=torch.bool)
    few[data.train_mask.nonzero().view(-1)[:3]] = True
    data.train_mask = few
    torch.manual_seed(0)
    teacher = GraphSAGE(8, 16, 2, 3, dropout=0.0, centering="none")
    with torch.no_grad():  # a confident, non-trivial teacher
        for p in teacher.parameters():
            p.mul_(3.0)
        t_pred = teacher(data.x, data.edge_index).argmax(-1)
    unlabelled = ~few
    agree = {}
    for nodes in ("train", "all"):
        torch.manual_seed(1)
        student = GraphSAGE(8, 16, 2, 3, dropout=0.0, centering="none")
        cfg = TrainConfig(epochs=60, lr=0.02, weight_decay=0.0, kd_alpha=1.0, kd_nodes=nodes,
                          mode=mode, fanouts=[-1, -1], batch_size=32, sampler_backend="csr")
        fit(student, data, cfg, teacher=teacher)
        student.eval()  # final weights: the best-validation ones follow the 3 labels
        with torch.no_grad():
            s_pred = student(data.x, data.edge_index).argmax(-1)
        agree[nodes] = float((s_pred == t_pred)[unlabelled].float().mean())
    assert agree["all"] > 0.9
    assert agree["all"] > agree["train"] + 0.1


def test_train_config_rejects_unknown_kd_nodes():
    with pytest.raises(ValueError, match="kd_nodes"):
        TrainConfig(kd_nodes="labelled").validate()


def test_lsp_on_graph_edges_enters_the_loss():
    data = _sbm()
    torch.manual_seed(0)
    teacher = GraphSAGE(8, 16, 3, 3, dropout=0.0)
    student = BinSAGE(8, 16, 3, 3, dropout=0.0, stage=2)
    rows = torch.arange(30)
    base = Objective(TrainConfig(lsp_weight=0.0), teacher)(student, data.x, data.edge_index,
                                                           data.y, rows)
    obj = Objective(TrainConfig(lsp_weight=100.0), teacher)
    with_lsp = obj(student, data.x, data.edge_index, data.y, rows)
    assert with_lsp > base
    # the full-batch loop's cached teacher outputs (logits and hidden) give the same loss
    cached = obj(student, data.x, data.edge_index, data.y, rows,
                 teacher_out=obj.teacher_outputs(data.x, data.edge_index))
    assert float(cached) == pytest.approx(float(with_lsp), rel=1e-6)
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
    # same weight kind on both sides: nothing to fold
    assert match_binary_scale(BinGCN(6, 8, 2, 3, stage=3), BinGCN(6, 8, 2, 3, stage=3)) == 0


def test_cascade_students_start_from_teachers(tmp_path):
    data = _sbm()
    base = TrainConfig(epochs=4, lr=0.01, weight_decay=0.0)
    configs = default_stage_configs(base)
    assert configs[2].lr == pytest.approx(0.0025) and configs[3].weight_decay == 0.0
    seen = []

    def make(stage):
        torch.manual_seed(100 + stage)  # a student's own init must be overwritten
        m = BinSAGE(8, 16, 2, 3, stage=stage, centering="mean")
        seen.append(m)
        return m

    res = run_cascade(make, data, configs, out_dir=tmp_path)
    assert sorted(res.stages) == [0, 1, 2, 3]
    assert res.model.stage == 3
    assert (tmp_path / "stage3" / "best.pt").is_file()
    # resume: finished stages are loaded, not retrained
    again = run_cascade(make, data, configs, out_dir=tmp_path, resume=True)
    assert [r["test"] for r in again.table()] == [r["test"] for r in res.table()]
    with pytest.raises(ValueError, match="stage"):
        run_cascade(make, data, {0: base}, last_stage=3)


def test_cascade_rejects_mismatched_layouts():
    data = _sbm()
    teacher = GraphSAGE(8, 16, 2, 3)
    with pytest.raises(ValueError, match="layout"):
        run_cascade(lambda s: BinSAGE(8, 32, 2, 3, stage=s), data,
                    default_stage_configs(TrainConfig(epochs=1)), teacher=teacher)


def test_fit_rejects_bad_data():
    data = _sbm()
    bad = data.clone()
    bad.x[0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        fit(BinSAGE(8, 8, 3, 3), bad, TrainConfig(epochs=1))
    nosplit = Data(x=data.x, y=data.y, edge_index=data.edge_index)
    with pytest.raises(ValueError, match="train_mask"):
        fit(BinSAGE(8, 8, 3, 3), nosplit, TrainConfig(epochs=1))
    with pytest.raises(ValueError, match="mode"):
        fit(BinSAGE(8, 8, 3, 3), data, TrainConfig(epochs=1, mode="sampled"))


needs_planetoid = pytest.mark.skipif(
    not (PLANETOID_RAW / "ind.cora.x").is_file(), reason="Planetoid raw files not available"
)


@needs_planetoid
def test_cli_train_node_and_distill_node(tmp_path, capsys):
    from bingnn.cli.main import main

    common = ["--dataset", "cora", "--root", str(tmp_path / "data"), "--raw-dir",
              str(PLANETOID_RAW), "--epochs", "2", "--hidden", "8", "--no-progress",
              "--threads", "1"]
    out = tmp_path / "train"
    assert main(["train-node", *common, "--model", "bingcn", "--seeds", "2",
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["seed"] for r in rows] == ["0", "1", "mean", "std"]
    tests = [float(r["test"]) for r in rows[:2]]
    assert float(rows[2]["test"]) == pytest.approx(sum(tests) / 2, abs=1e-6)
    assert (out / "curves.png").stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == 2 and summary["options"]["hidden"] == 8
    assert "+-" in capsys.readouterr().out
    # re-running resumes: finished seeds are not retrained
    mtime = (out / "seed0" / "result.json").stat().st_mtime_ns
    assert main(["train-node", *common, "--model", "bingcn", "--seeds", "2", "--out",
                 str(out)]) == 0
    assert (out / "seed0" / "result.json").stat().st_mtime_ns == mtime

    dout = tmp_path / "distill"
    teacher = out.parent / "float"
    assert main(["train-node", *common, "--model", "sage", "--out", str(teacher)]) == 0
    assert main(["distill-node", *common, "--model", "binsage", "--teacher",
                 str(teacher / "seed0" / "best.pt"), "--out", str(dout)]) == 0
    rows = list(csv.DictReader(open(dout / "results.csv")))
    assert {r["stage"] for r in rows} == {"1", "2", "3"}
    assert (dout / "cascade.png").is_file()
    opts = json.loads((dout / "summary.json").read_text())["options"]
    assert (opts["kd_nodes"], opts["kd_alpha"]) == ("all", 0.9)  # the Planetoid recipe
    paper = tmp_path / "distill-paper"
    assert main(["distill-node", *common, "--model", "binsage", "--teacher",
                 str(teacher / "seed0" / "best.pt"), "--out", str(paper), "--last-stage", "1",
                 "--kd-nodes", "train", "--kd-alpha", "0.1"]) == 0
    opts = json.loads((paper / "summary.json").read_text())["options"]
    assert (opts["kd_nodes"], opts["kd_alpha"]) == ("train", 0.1)
    from bingnn.train.checkpoint import load_checkpoint

    used = load_checkpoint(paper / "seed0" / "stage1" / "checkpoint.pt")["config"]
    assert (used["kd_nodes"], used["kd_alpha"]) == ("train", 0.1)  # what training ran with
    assert main(["train-node", *common, "--model", "nope"]) == 2
    assert main(["distill-node", *common, "--model", "binsage", "--teacher",
                 str(tmp_path / "missing.pt")]) == 2
