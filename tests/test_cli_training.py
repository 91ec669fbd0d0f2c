"""The training commands: every option reaches the configuration a run records; bad values
fail in one line before anything is written; ``python -m bingnn``; torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _graphs import PLANETOID_RAW

from bingnn.cli.main import build_parser, main

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _err_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("bingnn: error: ")
    return err[0]


def _parse(argv):
    return build_parser().parse_args(argv)


def test_train_options_reach_the_config():
    from bingnn.cli.train_cmd import build_config

    args = _parse([
        "train", "--out", "o", "--model", "bindgcnn", "--variant", "rf", "--stage", "2",
        "--k", "7", "--widths", "8,16", "--emb-dims", "32", "--mlp", "12,6", "--dropout", "0.3",
        "--dataset", "synthetic", "--points", "64", "--train-samples", "50",
        "--test-samples", "20", "--val-fraction", "0.2", "--data-dir", "/d", "--download",
        "--epochs", "9", "--batch-size", "5", "--eval-batch-size", "7", "--optimizer", "sgd",
        "--lr", "0.02", "--weight-decay", "0.001", "--schedule", "step", "--step-size", "3",
        "--gamma", "0.25", "--label-smoothing", "0.05", "--recalibrate-bn",
        "--recalibrate-samples", "30", "--seed", "4",
        "--teacher", "t.pt", "--init-from-teacher", "--alpha", "0.6", "--lsp-weight", "2.5",
        "--temperature", "4", "--kernel-s", "hamming", "--kernel-t", "rbf_l2_sq",
    ])
    cfg = build_config(args)
    assert cfg["model"] == {"arch": "bindgcnn", "variant": "rf", "knn": "l2", "stage": 2,
                            "k": 7, "widths": [8, 16], "emb_dims": 32, "mlp": [12, 6],
                            "dropout": 0.3}
    assert cfg["data"] == {"dataset": "synthetic", "num_points": 64, "download": True,
                           "val_fraction": 0.2, "root": "/d", "train_samples": 50,
                           "test_samples": 20}
    assert cfg["train"] == {"optimizer": "sgd", "lr": 0.02, "weight_decay": 0.001,
                            "epochs": 9, "batch_size": 5, "eval_batch_size": 7,
                            "schedule": {"type": "step", "step_size": 3, "gamma": 0.25},
                            "recalibrate_bn": True, "recalibrate_samples": 30}
    assert cfg["loss"] == {"label_smoothing": 0.05, "alpha": 0.6, "lsp_weight": 2.5,
                           "temperature": 4.0, "kernel_s": "rbf_hamming",
                           "kernel_t": "rbf_l2_sq"}
    assert (cfg["seed"], cfg["teacher"], cfg["init_from_teacher"]) == (4, "t.pt", True)
    # every option of the parser is used by the config (or is a runtime option)
    runtime = {"out", "device", "backend", "bf16", "threads", "no_progress", "func", "command",
               "debug"}
    used = {"model", "variant", "knn", "stage", "k", "widths", "emb_dims", "mlp", "dropout",
            "dataset", "points", "train_samples", "test_samples", "val_fraction", "data_dir",
            "download", "epochs", "batch_size", "eval_batch_size", "optimizer", "lr",
            "weight_decay", "schedule", "step_size", "gamma", "patience", "label_smoothing",
            "recalibrate_bn", "recalibrate_samples", "seed", "teacher", "init_from_teacher",
            "alpha", "lsp_weight", "temperature", "kernel_s", "kernel_t"}
    assert set(vars(args)) == runtime | used


def test_recalibrate_samples_needs_recalibrate_bn(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "o"), "--recalibrate-samples", "30"]) == 2
    assert "add --recalibrate-bn" in _err_line(capsys)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("schedule, extra, want", [
    ("cosine", [], {"type": "cosine"}),
    ("constant", [], {"type": "constant"}),
    ("multistep", ["--gamma", "0.1"], {"type": "multistep", "milestones": [0.5, 0.75],
                                       "gamma": 0.1}),
    ("plateau", ["--patience", "3"], {"type": "plateau", "patience": 3, "gamma": 0.5}),
])
def test_schedule_options(schedule, extra, want):
    from bingnn.cli.train_cmd import build_config

    args = _parse(["train", "--out", "o", "--schedule", schedule, *extra])
    assert build_config(args)["train"]["schedule"] == want


def _node_args(cmd, extra=()):
    return _parse([cmd, "--dataset", "citeseer", "--model", "binsage", "--root", "/r",
                   "--raw-dir", "/raw", "--download", "--no-normalize-features", "--layers",
                   "3", "--hidden", "24", "--dropout", "0.1", "--input-dropout", "0.2",
                   "--centering", "median", "--real-last", "--no-node-scale", "--epochs", "11",
                   "--lr", "0.03", "--weight-decay", "0.0001", "--schedule", "plateau",
                   "--patience", "4", "--mode", "minibatch", "--fanouts", "4,3,2",
                   "--batch-size", "64", "--eval-mode", "layerwise", "--eval-batch-size", "99",
                   *extra])


def test_node_options_reach_the_config():
    from bingnn.cli.node_cmd import build_recipe
    from bingnn.distill.recipe import single_run_config, stage_config

    args = _node_args("distill-node", ["--kd-alpha", "0.4", "--kd-nodes", "train",
                                       "--kd-temperature", "5", "--lsp-weight", "1.5"])
    recipe = build_recipe(args, "binsage")
    for stage in range(4):
        cfg = stage_config(recipe, stage, "binsage")
        assert cfg["data"] == {"dataset": "citeseer", "normalize_features": False,
                               "root": "/r", "raw_dir": "/raw", "download": True}
        assert cfg["model"] == {"arch": "graphsage" if stage == 0 else "binsage",
                                "hidden_channels": 24, "num_layers": 3, "dropout": 0.1,
                                "input_dropout": 0.2, "centering": "median",
                                "binary_last": False, "stage": stage}
        tr = cfg["train"]
        assert (tr["epochs"], tr["lr"], tr["weight_decay"], tr["mode"], tr["fanouts"],
                tr["batch_size"], tr["eval_mode"], tr["eval_batch_size"]) == (
            11, 0.03, 0.0001, "minibatch", [4, 3, 2], 64, "layerwise", 99)
        assert tr["schedule"] == {"type": "plateau", "patience": 4, "gamma": 0.5}
        if stage:
            loss = cfg["loss"]
            assert (loss["alpha"], loss["kd_nodes"], loss["temperature"], loss["lsp_weight"]) \
                == (0.4, "train", 5.0, 1.5)
    args = _node_args("train-node", ["--stage", "1"])
    cfg = single_run_config(build_recipe(args, "binsage"), "binsage", 1)
    assert (cfg["model"]["arch"], cfg["model"]["stage"], cfg["train"]["lr"]) == ("binsage", 1,
                                                                                 0.03)
    gcn = _parse(["train-node", "--dataset", "cora", "--model", "bingcn", "--no-node-scale"])
    assert single_run_config(build_recipe(gcn, "bingcn"), "bingcn")["model"]["node_scale"] \
        is False
    # --sign-messages reaches the binary GraphSAGE students, not their float teacher
    from bingnn.distill.recipe import stage_config

    sm = build_recipe(_parse(["distill-node", "--dataset", "cora", "--model", "binsage",
                              "--sign-messages"]), "binsage")
    models = [stage_config(sm, s, "binsage")["model"] for s in range(4)]
    assert [m.get("sign_messages", False) for m in models] == [False, True, True, True]
    assert "sign_messages" not in single_run_config(build_recipe(args, "binsage"), "binsage",
                                                    1)["model"]


def test_a_failed_train_leaves_nothing_behind(tmp_path, capsys):
    """k > points: refused before the output folder is created (issue 11, finding 9)."""
    out = tmp_path / "o"
    assert main(["train", "--out", str(out), "--points", "8", "--k", "20", "--no-progress"]) == 2
    assert "k = 20 neighbours need 1 <= k <= num_points (8)" in _err_line(capsys)
    assert not out.exists()
    # a model the data cannot feed fails in its first forward pass, still before any write
    assert main(["train", "--out", str(out), "--model", "bindgcnn", "--variant", "bf2_bal",
                 "--points", "16", "--k", "4", "--widths", "8,8", "--emb-dims", "16", "--mlp",
                 "8,8", "--train-samples", "20", "--no-progress", "--lr", "1e-3",
                 "--dataset", "modelnet40", "--data-dir", str(tmp_path / "none")]) == 2
    _err_line(capsys)
    assert not out.exists()


def test_bad_recipe_values_fail_before_training(tmp_path, capsys):
    """kernel_s = "foo" and temperature = -1 are refused when the recipe is read, by
    --print-recipe too (issue 11, finding 5)."""
    for text, needle in (('[stage2]\nkernel_s = "foo"\n', "unknown LSP kernel 'foo'"),
                         ("[loss]\ntemperature = -1\n", "temperature must be > 0")):
        p = tmp_path / "bad.toml"
        p.write_text(text)
        out = tmp_path / "run"
        assert main(["distill", "--recipe", str(p), "--print-recipe"]) == 2
        assert needle in _err_line(capsys)
        assert main(["distill", "--recipe", str(p), "--out", str(out)]) == 2
        assert needle in _err_line(capsys)
        assert not out.exists()
    p.write_text("[stage1]\nlr = 'fast'\n")
    assert main(["distill", "--recipe", str(p)]) == 2
    assert "'stage1.lr' must be a number, got 'fast'" in _err_line(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("extra, needle", [
    (["--backend", "nccl"], "--backend nccl needs CUDA GPUs"),
    (["--bf16"], "--bf16 (bfloat16 autocast) needs a CUDA device"),
    (["--device", "cuda"], "CUDA is not available"),
])
def test_gpu_options_without_a_gpu(tmp_path, capsys, extra, needle):
    for argv in (["train", "--out", str(tmp_path / "o"), "--epochs", "1"],
                 ["distill", "--recipe", "quick", "--out", str(tmp_path / "d")],
                 ["train-node", "--dataset", "cora", "--model", "gcn"]):
        assert main([*argv, *extra]) == 2
        assert needle in _err_line(capsys)
    assert not (tmp_path / "o").exists() and not (tmp_path / "d").exists()


def test_help_is_complete(capsys):
    for cmd in ("train", "distill", "train-node", "distill-node", "eval", "report"):
        assert main([cmd, "--help"]) == 0
        text = capsys.readouterr().out
        for action in build_parser()._subparsers._group_actions[0].choices[cmd]._actions:
            for opt in action.option_strings:
                assert opt in text, (cmd, opt)
            if action.option_strings and action.dest != "help":
                assert action.help, (cmd, action.dest)  # every option says what it does
    assert main(["train", "--help"]) == 0
    assert "torchrun" in capsys.readouterr().out


def test_python_dash_m_bingnn():
    env = {**os.environ, "PYTHONPATH": SRC}
    r = subprocess.run([sys.executable, "-m", "bingnn", "--version"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("bingnn ")
    r = subprocess.run([sys.executable, "-m", "bingnn", "train", "--out", "x", "--k", "0"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("bingnn: error:")


TINY = ["--epochs", "2", "--points", "32", "--k", "4", "--widths", "8,8", "--emb-dims", "16",
        "--mlp", "8,8", "--train-samples", "40", "--test-samples", "12", "--batch-size", "8",
        "--optimizer", "sgd", "--lr", "0.05", "--dropout", "0", "--device", "cpu",
        "--no-progress", "--threads", "1"]


def test_torchrun_resumes_a_run_and_matches_one_process(tmp_path):
    """A run stopped after epoch 1 (one process) is finished by torchrun with two gloo
    processes; the result equals the straight one-process run, and only rank 0 wrote."""
    from bingnn.cli.train_cmd import build_config
    from bingnn.distill.cascade import run_stage
    from bingnn.train.checkpoint import load_checkpoint

    cfg = build_config(_parse(["train", "--out", "x", *TINY]))
    straight = run_stage(cfg, tmp_path / "a", "cpu", progress=False)

    class Stop(Exception):
        pass

    def stop(c, epoch, row):
        raise Stop

    with pytest.raises(Stop):
        run_stage(cfg, tmp_path / "b", "cpu", progress=False, callbacks=[stop])
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 1
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "bingnn", "train", "--out", str(tmp_path / "b"), *TINY],
        capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("test OA") == 1  # rank 0 prints, the other process does not
    resumed = json.loads((tmp_path / "b" / "done.json").read_text())
    assert resumed["best_epoch"] == straight["best_epoch"]
    assert resumed["test"] == pytest.approx(straight["test"])
    a = load_checkpoint(tmp_path / "a" / "final.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "final.pt")["model"]
    for k in a:
        if not k.endswith("num_batches_tracked"):
            torch.testing.assert_close(b[k], a[k], atol=1e-4, rtol=1e-3, msg=k)
    leftovers = [p.name for p in (tmp_path / "b").iterdir() if p.name.endswith(".tmp")]
    assert not leftovers


@pytest.mark.skipif(not (PLANETOID_RAW / "ind.cora.x").is_file(),
                    reason="Planetoid raw files not available")
def test_report_renders_the_docs_table(tmp_path, capsys):
    """The docs tables are re-derived from a run's files (issue 11, finding 3)."""
    out = tmp_path / "d"
    common = ["--dataset", "cora", "--raw-dir", str(PLANETOID_RAW), "--root",
              str(tmp_path / "data"), "--epochs", "2", "--hidden", "8", "--no-progress",
              "--threads", "1", "--seeds", "2"]
    assert main(["distill-node", *common, "--model", "bingcn", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[0] == "| stage | bingcn |" and len(rows) == 5
    import csv

    res = [r for r in csv.DictReader(open(out / "results.csv")) if r["seed"] in ("mean", "std")]
    m = {r["stage"]: float(r["test_acc"]) for r in res if r["seed"] == "mean"}
    s = {r["stage"]: float(r["test_acc"]) for r in res if r["seed"] == "std"}
    assert rows[4] == f"| 3 | {100 * m['3']:.2f} ± {100 * s['3']:.2f} (n=2) |"
    assert main(["report", str(tmp_path)]) == 2
    assert "no summary.csv or results.csv" in _err_line(capsys)


def test_library_code_never_imports_the_command_line():
    import ast

    root = Path(SRC) / "bingnn"
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if rel.parts[0] == "cli" or rel.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "bingnn.cli" or n.startswith("bingnn.cli.") for n in names):
                offenders.append(str(rel))
    assert offenders == []
