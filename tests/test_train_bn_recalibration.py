"""BatchNorm recalibration: statistics equal a plain recomputation over the data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _tiny_recipe import write_tiny
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bingnn.distill.cascade import run_cascade, stage_dir
from bingnn.distill.recipe import load_recipe
from bingnn.train.bn_recalibration import recalibrate_batchnorm
from bingnn.train.model_files import load_model_file


def test_statistics_are_the_average_over_the_batches():
    torch.manual_seed(0)
    # dropout in front of a BatchNorm: the statistics must be those of the eval network
    net = nn.Sequential(nn.Linear(5, 4), nn.Dropout(0.5), nn.BatchNorm1d(4), nn.ReLU(),
                        nn.Linear(4, 3), nn.BatchNorm1d(3))
    bn1 = net[2]
    with torch.no_grad():  # stale statistics, as after training
        bn1.running_mean.fill_(7.0)
        bn1.running_var.fill_(0.01)
    x = torch.randn(40, 5) * 3 + 1
    y = torch.zeros(40, dtype=torch.long)
    loader = DataLoader(TensorDataset(x, y), batch_size=10)  # 4 equal batches
    net.eval()
    assert recalibrate_batchnorm(net, loader) == 2
    assert not net.training  # mode kept
    # reference: mean over batches of the batch mean / unbiased batch variance
    with torch.no_grad():
        h = net[0](x).numpy().reshape(4, 10, 4)
    np.testing.assert_allclose(bn1.running_mean.numpy(), h.mean(1).mean(0), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(bn1.running_var.numpy(), h.var(1, ddof=1).mean(0), rtol=1e-4)
    assert bn1.momentum == 0.1  # restored for later training
    again = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    recalibrate_batchnorm(net, loader)
    assert net.training
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, again[k], msg=k)  # deterministic
    # no BatchNorm: nothing to do, the data is not even read
    assert recalibrate_batchnorm(nn.Linear(5, 3), [object()]) == 0


def test_cascade_stage_with_recalibration_saves_recalibrated_statistics(tmp_path):
    recipe = load_recipe(write_tiny(tmp_path / "tiny.toml", ""))
    recipe["stage2"] = {**recipe["stage2"], "recalibrate_bn": False}
    recipe["stage3"] = {**recipe["stage3"], "recalibrate_bn": True}
    out = tmp_path / "run"
    run_cascade(recipe, out, device="cpu", progress=False)
    folder = stage_dir(out, 3, "rf")
    assert json.loads((folder / "config.json").read_text())["train"]["recalibrate_bn"] is True
    assert "recalibrate_bn" not in json.loads(
        (stage_dir(out, 2, "rf") / "config.json").read_text())["train"]
    model, _ = load_model_file(folder / "final.pt", torch.device("cpu"))
    saved = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    assert saved
    # the saved statistics are those of the final weights on the un-augmented training set
    from bingnn.data import get_dataset

    d = recipe["data"]
    plain = get_dataset(d["dataset"], "train", num_points=d["num_points"], augment=False,
                        num_samples=d["train_samples"], seed=recipe.get("seed", 0))
    recalibrate_batchnorm(model, DataLoader(plain, batch_size=12))
    for k, v in model.state_dict().items():
        if "running" in k:
            torch.testing.assert_close(v, saved[k], rtol=1e-4, atol=1e-5, msg=k)


def test_recalibration_on_a_stratified_subset(tmp_path):
    """``recalibrate_samples``: the saved statistics are those of the same seeded,
    class-stratified subset of the training clouds, not of all of them."""
    from torch.utils.data import Subset

    from bingnn.data import get_dataset, stratified_subset

    recipe = load_recipe(write_tiny(tmp_path / "tiny.toml", ""))
    recipe["stage2"] = {**recipe["stage2"], "recalibrate_bn": False}
    recipe["stage3"] = {**recipe["stage3"], "recalibrate_bn": True, "recalibrate_samples": 12}
    out = tmp_path / "run"
    run_cascade(recipe, out, device="cpu", progress=False)
    folder = stage_dir(out, 3, "rf")
    assert json.loads((folder / "config.json").read_text())["train"]["recalibrate_samples"] == 12
    model, _ = load_model_file(folder / "final.pt", torch.device("cpu"))
    saved = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    d = recipe["data"]
    plain = get_dataset(d["dataset"], "train", num_points=d["num_points"], augment=False,
                        num_samples=d["train_samples"], seed=recipe.get("seed", 0))
    from bingnn.distill.cascade import _seed_for  # the stage's seed, the task's seed

    cfg = json.loads((folder / "config.json").read_text())
    keep = stratified_subset(plain.labels, 12, _seed_for(cfg))
    assert len(plain) > 12 and len(set(plain.labels[keep].tolist())) == plain.num_classes
    recalibrate_batchnorm(model, DataLoader(plain, batch_size=12))
    whole = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    assert any(not torch.allclose(whole[k], saved[k]) for k in saved)
    recalibrate_batchnorm(model, DataLoader(Subset(plain, keep.tolist()), batch_size=12))
    for k, v in model.state_dict().items():
        if "running" in k:
            torch.testing.assert_close(v, saved[k], rtol=1e-4, atol=1e-5, msg=k)


def test_recalibration_subset_is_fixed_unaugmented_and_checked():
    from bingnn.data import get_dataset
    from bingnn.train.distributed import DistContext
    from bingnn.train.pointcloud_task import PointCloudTask

    kw = {"num_points": 16, "seed": 0, "num_samples": 60}
    train = get_dataset("synthetic", "train", augment=True, **kw)
    val = get_dataset("synthetic", "val", augment=False, **kw)
    task = PointCloudTask(train, val, val, batch_size=8, eval_batch_size=7)
    ctx = DistContext()

    def clouds(samples):
        return torch.cat([b.inputs[0] for b in task.recalibration_batches(ctx, samples)])

    every = clouds(None)
    assert every.shape[0] == len(train)
    torch.testing.assert_close(every, torch.from_numpy(train.points))  # un-augmented
    sub = clouds(20)
    assert sub.shape[0] == 20
    torch.testing.assert_close(sub, clouds(20))  # the same clouds at every epoch
    rows = {tuple(r) for r in every.reshape(len(train), -1).tolist()}
    assert all(tuple(r) in rows for r in sub.reshape(20, -1).tolist())
    torch.testing.assert_close(clouds(10_000), every)  # more than there are: all of them
    for bad in (0, -3, True):
        with pytest.raises(ValueError, match="recalibrate_samples must be a count >= 1"):
            list(task.recalibration_batches(ctx, bad))


def test_recalibration_subset_needs_recalibration_and_point_clouds(tmp_path):
    from bingnn.distill.recipe import RecipeError, stage_config

    p = tmp_path / "r.toml"
    p.write_text('base = "quick"\n[stage3]\nrecalibrate_bn = false\nrecalibrate_samples = 64\n')
    with pytest.raises(RecipeError, match="recalibrate_samples sizes the BatchNorm"):
        stage_config(load_recipe(p), 3, "rf")
    p.write_text('base = "quick"\n[stage3]\nrecalibrate_samples = 64\n')
    assert stage_config(load_recipe(p), 3, "rf")["train"]["recalibrate_samples"] == 64
    assert "recalibrate_samples" not in stage_config(load_recipe(p), 1, "rf")["train"]
    p.write_text('base = "planetoid"\n[train]\nrecalibrate_bn = true\nrecalibrate_samples = 64\n')
    with pytest.raises(RecipeError, match="recalibrate_samples"):
        load_recipe(p)
