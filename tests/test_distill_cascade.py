import json

import pytest
import torch
from _tiny_recipe import write_tiny

from bingnn.distill.cascade import run_cascade, stage_dir
from bingnn.distill.recipe import load_recipe, stage_config
from bingnn.train.checkpoint import load_checkpoint
from bingnn.train.metrics_log import read_metrics


class Stop(KeyboardInterrupt):
    pass


def _recorder(seen):
    def cb(cfg, epoch, row):
        seen.append((cfg["variant"], cfg["stage"], epoch))

    return cb


def test_cascade_interrupt_resume_and_skip(tmp_path):
    recipe = load_recipe(write_tiny(tmp_path / "tiny.toml"))
    out = tmp_path / "run"

    def interrupt(cfg, epoch, row):
        if cfg["stage"] == 1 and epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        run_cascade(recipe, out, device="cpu", progress=False, callbacks=[interrupt])
    s0, s1 = stage_dir(out, 0, "float"), stage_dir(out, 1, "rf")
    assert (s0 / "done.json").exists() and (s0 / "best.pt").exists()
    assert not (s1 / "done.json").exists()
    assert load_checkpoint(s1 / "checkpoint.pt")["epoch"] == 1
    assert [r["epoch"] for r in read_metrics(s1 / "metrics.csv")] == [1]
    teacher_bytes = (s0 / "best.pt").read_bytes()

    seen: list = []
    rows = run_cascade(recipe, out, device="cpu", progress=False, callbacks=[_recorder(seen)])
    # stage 0 not redone, stage 1 continues at epoch 2, stages 2-3 run
    assert seen == [("rf", 1, 2), ("rf", 2, 1), ("rf", 3, 1)]
    assert (s0 / "best.pt").read_bytes() == teacher_bytes
    assert [r["epoch"] for r in read_metrics(s1 / "metrics.csv")] == [1, 2]
    assert [(r["stage"], r["variant"]) for r in rows] == [
        (0, "float"),
        (1, "rf"),
        (2, "rf"),
        (3, "rf"),
    ]
    for r in rows:
        for k in ("val_oa", "val_macc", "test_oa", "test_macc"):
            assert 0.0 <= r[k] <= 1.0
        assert r["params"] > 0 and 1 <= r["best_epoch"] <= r["epochs"]

    # outputs: resolved configs, summary files, PNG chart
    for stage in (1, 2, 3):
        d = stage_dir(out, stage, "rf")
        cfg = json.loads((d / "config.json").read_text())
        assert cfg == json.loads(json.dumps(stage_config(recipe, stage, "rf")))
        assert cfg["model"]["stage"] == stage
    assert json.loads((out / "summary.json").read_text()) == rows
    assert (out / "summary.csv").read_text().splitlines()[0] == (
        "stage,variant,best_epoch,val_oa,val_macc,test_oa,test_macc,params,epochs,time_s")
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # everything done: a re-run trains nothing and reports the same numbers
    seen.clear()
    rows2 = run_cascade(recipe, out, device="cpu", progress=False, callbacks=[_recorder(seen)])
    assert seen == [] and rows2 == rows

    # a deleted stage is redone, alone
    final3 = stage_dir(out, 3, "rf")
    for f in final3.iterdir():
        f.unlink()
    run_cascade(recipe, out, device="cpu", progress=False, callbacks=[_recorder(seen)])
    assert seen == [("rf", 3, 1)]


def test_students_start_from_teacher_and_config_guard(tmp_path):
    recipe = load_recipe(write_tiny(tmp_path / "tiny.toml"))
    out = tmp_path / "run"
    run_cascade(recipe, out, device="cpu", progress=False)
    s1 = load_checkpoint(stage_dir(out, 1, "rf") / "best.pt")
    s2_cfg = json.loads((stage_dir(out, 2, "rf") / "config.json").read_text())
    assert s2_cfg["init_from_teacher"] is True
    assert s1["model_config"]["stage"] == 1
    # the stage-2 student has the same parameter names as its stage-1 teacher
    s2 = load_checkpoint(stage_dir(out, 2, "rf") / "best.pt")
    assert set(s1["model"]) == set(s2["model"])

    # the same OUT with a different configuration is refused, not mixed
    changed = dict(recipe)
    changed["stage2"] = {**recipe["stage2"], "lr": 0.5}
    with pytest.raises(ValueError, match="different configuration"):
        run_cascade(changed, out, device="cpu", progress=False)


def test_resume_is_exact(tmp_path):
    """Interrupt after epoch 1 and resume == uninterrupted run (model, optimizer, scheduler,
    RNG and data order restored)."""
    from bingnn.distill.cascade import run_stage

    recipe = load_recipe(write_tiny(tmp_path / "tiny.toml"))
    cfg = stage_config(recipe, 0)
    cfg["train"]["epochs"] = 2
    dev = "cpu"
    run_stage(cfg, tmp_path / "a", dev, progress=False)

    def stop(c, epoch, row):
        raise Stop

    with pytest.raises(Stop):
        run_stage(cfg, tmp_path / "b", dev, progress=False, callbacks=[stop])
    run_stage(cfg, tmp_path / "b", dev, progress=False)
    a = load_checkpoint(tmp_path / "a" / "final.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "final.pt")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ra = read_metrics(tmp_path / "a" / "metrics.csv")
    rb = read_metrics(tmp_path / "b" / "metrics.csv")
    assert [r["loss"] for r in ra] == [r["loss"] for r in rb]
