"""The one epoch loop: exact resume with every schedule, validation-based selection, the test
split read once for the report, and the run folder it leaves."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _graphs import sbm

from bingnn.data import get_dataset
from bingnn.graphs.node_task import NodeTask
from bingnn.models import DGCNN, BinSAGE
from bingnn.train.checkpoint import load_checkpoint
from bingnn.train.metrics_log import read_metrics
from bingnn.train.objective import Objective
from bingnn.train.optim import SCHEDULES, build_optimizer, build_scheduler
from bingnn.train.pointcloud_task import PointCloudTask
from bingnn.train.trainer import fit


class Stop(Exception):
    pass


SCHEDULE_TABLES = {
    "constant": {"type": "constant"},
    "cosine": {"type": "cosine"},
    "multistep": {"type": "multistep", "milestones": [0.5, 0.75], "gamma": 0.5},
    "step": {"type": "step", "step_size": 3, "gamma": 0.5},
    "plateau": {"type": "plateau", "patience": 0, "gamma": 0.5},
}


def _node_run(schedule, out, epochs=8, stop_after=None, mode="minibatch"):
    data = sbm()
    task = NodeTask(data, 3, mode=mode, fanouts=[3, 3], batch_size=10, seed=1)
    torch.manual_seed(0)
    model = BinSAGE(8, 16, 2, 3, dropout=0.3, centering="batchnorm")
    opt = build_optimizer(model.parameters(), "adam", 0.01, 1e-4)
    sched = build_scheduler(opt, schedule, epochs)

    def stop(epoch, row):
        if epoch == stop_after:
            raise Stop

    return fit(task, model, Objective(), opt, sched, epochs=epochs, out_dir=out, seed=3,
               callbacks=[stop])


def _lrs(folder):
    return [r["lr"] for r in read_metrics(folder / "metrics.csv")]


@pytest.mark.parametrize("name", SCHEDULES)
def test_resume_continues_exactly_with_every_schedule(tmp_path, name):
    """Stopped after epoch 4 and run again == a straight run: the learning rate of every
    epoch, the weights, the selection and the report."""
    assert set(SCHEDULE_TABLES) == set(SCHEDULES)
    schedule = SCHEDULE_TABLES[name]
    straight = _node_run(schedule, tmp_path / "a")
    with pytest.raises(Stop):
        _node_run(schedule, tmp_path / "b", stop_after=4)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 4
    resumed = _node_run(schedule, tmp_path / "b")
    assert _lrs(tmp_path / "b") == _lrs(tmp_path / "a")
    assert resumed.record == {**straight.record, "time_s": resumed.record["time_s"]}
    for f in ("final.pt", "best.pt"):
        a = load_checkpoint(tmp_path / "a" / f)["model"]
        b = load_checkpoint(tmp_path / "b" / f)["model"]
        for k in a:
            assert torch.equal(a[k], b[k]), (f, k)
    if name == "multistep":  # the case of the issue: the step schedule resumed one epoch late
        assert _lrs(tmp_path / "b") == pytest.approx([0.01] * 4 + [0.005] * 2 + [0.0025] * 2)
    if name == "plateau":  # the schedule did act, so the comparison means something
        assert min(_lrs(tmp_path / "a")) < 0.01


def test_done_run_is_not_redone(tmp_path):
    first = _node_run({"type": "constant"}, tmp_path, epochs=2, mode="full")
    again = _node_run({"type": "constant"}, tmp_path, epochs=2, mode="full")
    assert again.record == first.record
    assert json.loads((tmp_path / "done.json").read_text()) == first.record
    assert [r["epoch"] for r in read_metrics(tmp_path / "metrics.csv")] == [1, 2]


class GuardedTest(torch.utils.data.Dataset):
    """A test split that refuses to be read until the report (``open``)."""

    def __init__(self, ds):
        self.ds, self.open, self.reads = ds, False, 0

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        if not self.open:
            raise AssertionError("the test split was read before the final report")
        self.reads += 1
        return self.ds[i]

    @property
    def num_classes(self):
        return self.ds.num_classes


def test_point_cloud_selection_reads_validation_never_test(tmp_path):
    kw = dict(num_points=32, num_samples=60, seed=0)
    train = get_dataset("synthetic", "train", **kw)
    val = get_dataset("synthetic", "val", **kw)
    test = GuardedTest(get_dataset("synthetic", "test", num_points=32, num_samples=24))
    task = PointCloudTask(train, val, test, batch_size=8, eval_batch_size=12)
    torch.manual_seed(0)
    model = DGCNN(num_classes=12, k=4, widths=[8, 8], emb_dims=16, mlp=[16, 8], dropout=0.0)
    opt = build_optimizer(model.parameters(), "adam", 3e-3)
    epochs = 4

    def open_after_training(epoch, row):
        if epoch == epochs:  # only the report remains
            test.open = True

    res = fit(task, model, Objective(label_smoothing=0.2), opt,
              build_scheduler(opt, {"type": "cosine"}, epochs), epochs=epochs, out_dir=tmp_path,
              callbacks=[open_after_training])
    assert test.reads == len(test)  # read once, whole, for the report
    rows = read_metrics(tmp_path / "metrics.csv")
    assert not any(k.startswith("test") for k in rows[0])  # no test column per epoch
    val_oa = [r["val_oa"] for r in rows]
    assert res.record["best_epoch"] == int(np.argmax(val_oa)) + 1  # first best on validation
    assert res.record["val"]["oa"] == max(val_oa)
    # the report is the selected weights on the test split
    best = load_checkpoint(tmp_path / "best.pt")
    model.load_state_dict(best["model"])
    pred, true = task.predict(model, "test", _ctx())
    assert res.record["test"]["oa"] == pytest.approx(float((pred == true).mean()))


def _ctx():
    from bingnn.train.distributed import DistContext

    return DistContext()


def test_node_selection_reads_validation_never_test(tmp_path):
    data = sbm()
    reads = []

    class Recording(NodeTask):
        def evaluate(self, model, split, ctx):
            reads.append(split)
            return super().evaluate(model, split, ctx)

    task = Recording(data, 3)
    torch.manual_seed(0)
    model = BinSAGE(8, 16, 2, 3, dropout=0.2, centering="mean")
    opt = build_optimizer(model.parameters(), "adam", 0.02)
    res = fit(task, model, Objective(), opt, build_scheduler(opt, None, 6), epochs=6)
    assert reads == ["val"] * 6 + ["test"]
    vals = [r["val_acc"] for r in res.history]
    assert res.record["best_epoch"] == int(np.argmax(vals)) + 1
    model.load_state_dict(res.best_state)
    want = float((task.predict(model).argmax(1) == data.y)[data.test_mask].float().mean())
    assert res.record["test"]["acc"] == pytest.approx(want)


def test_bad_arguments():
    task = NodeTask(sbm(), 3)
    model = BinSAGE(8, 16, 2, 3)
    opt = build_optimizer(model.parameters())
    with pytest.raises(ValueError, match="epochs"):
        fit(task, model, Objective(), opt, build_scheduler(opt, None, 1), epochs=0)
    with pytest.raises(ValueError, match="CUDA"):
        fit(task, model, Objective(), opt, build_scheduler(opt, None, 1), epochs=1, bf16=True)
    nan = sbm()
    nan.x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        NodeTask(nan, 3)
    with pytest.raises(ValueError, match="batch_size"):
        NodeTask(sbm(), 3, mode="minibatch", batch_size=0)
    with pytest.raises(ValueError, match="fan-outs"):
        NodeTask(sbm(), 3, mode="minibatch", fanouts=[3, 0])
    no_val = sbm()
    no_val.val_mask[:] = False
    with pytest.raises(ValueError, match="validation split is empty"):
        NodeTask(no_val, 3)


def test_bf16_autocast_is_for_float_models_only():
    """--bf16 covers the float parts (teacher, stage 0 and 1); binary students run in float32
    so their signs are exact. (The autocast itself needs CUDA; this checks the choice.)"""
    from bingnn.models import BinDGCNN
    from bingnn.train.trainer import _is_float_model, _Teacher

    small = dict(k=4, widths=[8, 8], emb_dims=16, mlp=[8, 8])
    assert _is_float_model(DGCNN(**small))
    assert _is_float_model(BinDGCNN(stage=1, **small))
    assert not _is_float_model(BinDGCNN(stage=2, **small))
    assert not _is_float_model(BinSAGE(8, 16, 2, 3, stage=3))
    task = NodeTask(sbm(), 3)
    cpu = torch.device("cpu")
    assert _Teacher(BinSAGE(8, 16, 2, 3, stage=0), task, False, True, cpu).amp
    assert not _Teacher(BinSAGE(8, 16, 2, 3, stage=2), task, False, True, cpu).amp


def test_a_checkpoint_of_another_loop_is_refused(tmp_path):
    from bingnn.train.checkpoint import CheckpointError, save_checkpoint

    save_checkpoint(tmp_path / "checkpoint.pt", {"model": {}, "epoch": 3, "best_oa": 0.5})
    with pytest.raises(CheckpointError, match="not written by this trainer"):
        _node_run({"type": "constant"}, tmp_path, epochs=4, mode="full")
