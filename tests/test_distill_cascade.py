import json

import pytest
import torch
from _tiny_recipe import TINY_RECIPE, write_tiny

from bingnn.distill.cascade import _load_teacher_weights, run_cascade, stage_dir
from bingnn.distill.recipe import load_recipe, stage_config
from bingnn.models import build_model
from bingnn.train.checkpoint import load_checkpoint
from bingnn.train.metrics_log import read_metrics
from bingnn.train.model_files import load_model_file


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


def test_start_at_a_later_stage_reuses_another_runs_stage(tmp_path):
    """[stage3] teacher = run A's stage-2 best.pt runs stage 3 alone, and it is run A's stage 3
    (same seed, same data, same teacher and initialisation); a file of the wrong stage or a
    missing one is refused in one line."""
    recipe = load_recipe(write_tiny(tmp_path / "tiny.toml"))
    a = tmp_path / "a"
    rows_a = run_cascade(recipe, a, device="cpu", progress=False)
    s2 = stage_dir(a, 2, "rf") / "best.pt"
    b_file = write_tiny(tmp_path / "b.toml", f'teacher = "{s2}"\n')  # appended to [stage3]
    rb = load_recipe(b_file)
    seen: list = []
    rows_b = run_cascade(rb, tmp_path / "b", device="cpu", progress=False,
                         callbacks=[_recorder(seen)])
    assert seen == [("rf", 3, 1)]
    assert not stage_dir(tmp_path / "b", 0, "float").exists()
    assert [(r["stage"], r["variant"]) for r in rows_b] == [(3, "rf")]
    want = {k: v for k, v in rows_a[-1].items() if k != "time_s"}
    assert {k: v for k, v in rows_b[0].items() if k != "time_s"} == want
    wa = load_checkpoint(stage_dir(a, 3, "rf") / "best.pt")["model"]
    wb = load_checkpoint(stage_dir(tmp_path / "b", 3, "rf") / "best.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    cfg = json.loads((stage_dir(tmp_path / "b", 3, "rf") / "config.json").read_text())
    assert cfg["teacher_file"] == str(s2)

    wrong = write_tiny(tmp_path / "c.toml", f'teacher = "{stage_dir(a, 1, "rf") / "best.pt"}"\n')
    with pytest.raises(ValueError, match="not this cascade's stage-2 model: stage 1"):
        run_cascade(load_recipe(wrong), tmp_path / "c", device="cpu", progress=False)
    missing = write_tiny(tmp_path / "d.toml", f'teacher = "{tmp_path / "nope.pt"}"\n')
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_cascade(load_recipe(missing), tmp_path / "d", device="cpu", progress=False)


_S3 = {"[stage3]\n": '[stage3]\nteacher = "y.pt"\n'}


@pytest.mark.parametrize("edit, needle", [
    ({"[stage2]\n": '[stage2]\nteacher = "x.pt"\n', **_S3}, "a cascade starts at one stage"),
    ({'variants = ["rf"]': 'variants = ["rf", "bf2"]', **_S3}, "name that one variant"),
    ({"[stage0]\n": '[stage0]\nteacher = "t.pt"\n', **_S3},
     "stage0.teacher and stage3.teacher are both set"),
])
def test_later_stage_teacher_recipe_checks(tmp_path, edit, needle):
    path = tmp_path / "r.toml"
    text = TINY_RECIPE
    for old, new in edit.items():
        assert old in text
        text = text.replace(old, new)
    path.write_text(text)
    with pytest.raises(ValueError, match=needle):
        load_recipe(path)


def test_parallel_variants_give_the_sequential_results(tmp_path):
    """jobs=2 trains the students of both variants in two processes after the teacher: the
    same rows (but the minutes) and the same weights as one process."""
    path = write_tiny(tmp_path / "two.toml")
    text = (tmp_path / "two.toml").read_text().replace('variants = ["rf"]',
                                                       'variants = ["rf", "bf2-hamming"]')
    (tmp_path / "two.toml").write_text(text.replace("[stage1]\nepochs = 2", "[stage1]\nepochs = 1"))
    recipe = load_recipe(path)
    seq = run_cascade(recipe, tmp_path / "seq", device="cpu", progress=False)
    par = run_cascade(recipe, tmp_path / "par", device="cpu", progress=False, jobs=2)

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "time_s"} for r in rows]

    assert strip(par) == strip(seq)
    assert [(r["stage"], r["variant"]) for r in par][:2] == [(0, "float"), (1, "rf")]
    for v in ("rf", "bf2-hamming"):
        a = load_checkpoint(stage_dir(tmp_path / "seq", 3, v) / "best.pt")["model"]
        b = load_checkpoint(stage_dir(tmp_path / "par", 3, v) / "best.pt")["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), v
    assert json.loads((tmp_path / "par" / "summary.json").read_text()) == par
    with pytest.raises(ValueError, match="callbacks"):
        run_cascade(recipe, tmp_path / "x", device="cpu", progress=False, jobs=2,
                    callbacks=[_recorder([])])
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        run_cascade(recipe, tmp_path / "x", device="cpu", progress=False, jobs=0)


def test_a_stage_with_prelu_shift_starts_from_a_teacher_without_it(tmp_path):
    """The ModelNet10 ablation's setup: stage 3 with prelu_shift, taught by (and initialised
    from) a stage-2 model trained without it; the new biases start at 0, every other weight is
    the teacher's (up to the XNOR scale fold), and a teacher of another layout is refused."""
    bf2 = TINY_RECIPE.replace('variants = ["rf"]', 'variants = ["bf2-hamming"]')
    (tmp_path / "a.toml").write_text(bf2)
    a = tmp_path / "a"
    run_cascade(load_recipe(tmp_path / "a.toml"), a, device="cpu", progress=False)
    s2 = stage_dir(a, 2, "bf2-hamming") / "best.pt"
    shifted = bf2.replace("[model]\n", "[model]\nprelu_shift = true\n") + f'teacher = "{s2}"\n'
    (tmp_path / "b.toml").write_text(shifted)
    seen: list = []
    run_cascade(load_recipe(tmp_path / "b.toml"), tmp_path / "b", device="cpu", progress=False,
                callbacks=[_recorder(seen)])
    assert seen == [("bf2-hamming", 3, 1)]
    cfg = json.loads((stage_dir(tmp_path / "b", 3, "bf2-hamming") / "config.json").read_text())
    assert cfg["model"]["prelu_shift"] is True
    w = load_checkpoint(stage_dir(tmp_path / "b", 3, "bf2-hamming") / "final.pt")["model"]
    assert [k for k in w if k.endswith("linear.bias") and k.startswith("convs.")] == [
        f"convs.{i}.linear.bias" for i in (1, 2, 3)]
    # how that stage started: the teacher's weights, zero biases
    teacher, _ = load_model_file(s2, "cpu")
    student = build_model({**cfg["model"], "num_classes": 12})
    _load_teacher_weights(student, teacher)
    t_state = teacher.state_dict()
    for k, v in student.state_dict().items():
        if k not in t_state:
            assert k.startswith("convs.") and k.endswith(".linear.bias"), k
            assert torch.equal(v, torch.zeros_like(v)), k
        else:
            assert torch.equal(v, t_state[k]), k

    # a teacher whose layout differs by more than those biases: one line, no training
    wide = bf2.replace("widths = [8, 8, 8, 8]", "widths = [8, 8, 8, 16]")
    (tmp_path / "c.toml").write_text(wide + f'teacher = "{s2}"\n')
    with pytest.raises(ValueError, match="does not share its teacher's layout"):
        run_cascade(load_recipe(tmp_path / "c.toml"), tmp_path / "c", device="cpu",
                    progress=False)


_ORPHAN_PARENT = """
import multiprocessing, sys, time
from concurrent.futures import ProcessPoolExecutor

def child(path):
    import os
    from bingnn.distill.cascade import exit_with_parent
    exit_with_parent()
    open(path, "w").write(str(os.getpid()))
    time.sleep(120)

if __name__ == "__main__":
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(child, sys.argv[1]).result()
"""


def test_student_processes_end_when_the_main_process_is_killed(tmp_path):
    """A killed `distill --jobs N` must not leave its student processes training on (they
    would keep writing to the run folder that a re-run resumes from)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script, pid_file = tmp_path / "parent.py", tmp_path / "child.pid"
    script.write_text(_ORPHAN_PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file)],
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (pid_file.exists() and pid_file.read_text()):
            assert time.monotonic() < deadline, "the child process did not start"
            assert parent.poll() is None, "the parent process ended early"
            time.sleep(0.1)
        child = int(pid_file.read_text())
        os.kill(child, 0)  # alive
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 30
        while True:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            # Reaped by init once it exits; a zombie still answers kill(0), so read its state.
            try:
                state = open(f"/proc/{child}/stat").read().split(") ")[1][0]
            except (FileNotFoundError, IndexError):
                break
            if state == "Z":
                break
            assert time.monotonic() < deadline, "the child process outlived its parent"
            time.sleep(0.1)
    finally:
        if parent.poll() is None:
            parent.kill()
        if pid_file.exists() and pid_file.read_text():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
