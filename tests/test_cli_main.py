import json

import pytest
import torch
from _tiny_recipe import write_tiny

from bingnn.cli.main import COMMANDS, main


def _err_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback
    assert err[0].startswith("bingnn: error: ")
    return err[0]


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("train", "distill", "eval"):
        assert name in out
    assert COMMANDS[:3] == ["train_cmd", "distill_cmd", "eval_cmd"]
    for cmd in ("train", "distill", "eval"):
        assert main([cmd, "--help"]) == 0
        assert "--device" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["frobnicate"], "invalid choice"),
        (["train"], "--out"),
        (["train", "--out", "x", "--points", "0"], "positive integer"),
        (["train", "--out", "x", "--widths", "8,a"], "comma-separated"),
        (["train", "--out", "x", "--model", "resnet"], "invalid choice"),
        (["distill", "--epochs-scale", "-1"], "positive number"),
        (["distill", "--recipe", "no_such_recipe.toml"], "neither a built-in"),
        (["eval"], "checkpoint"),
    ],
)
def test_bad_arguments_one_line(argv, needle, capsys):
    assert main(argv) == 2
    assert needle in _err_line(capsys)


def test_bad_recipe_key(tmp_path, capsys):
    p = write_tiny(tmp_path / "bad.toml", "[stage9]\nepochs = 1\n")
    assert main(["distill", "--recipe", p, "--out", str(tmp_path / "o")]) == 2
    assert "unknown recipe key 'stage9'" in _err_line(capsys)
    p2 = tmp_path / "bad2.toml"
    p2.write_text("[stage1]\nlr = 'fast'\n")
    assert main(["distill", "--recipe", str(p2)]) == 2
    assert "'stage1.lr' must be a number" in _err_line(capsys)
    p3 = tmp_path / "bad3.toml"
    p3.write_text("this is = not toml [")
    assert main(["distill", "--recipe", str(p3)]) == 2
    assert "not valid TOML" in _err_line(capsys)
    assert main(["distill", "--recipe", "quick", "--variants", "bf7"]) == 2
    assert "unknown variant" in _err_line(capsys)


def test_eval_missing_and_corrupt(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "none.pt")]) == 2
    assert "not found" in _err_line(capsys)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 50)
    assert main(["eval", str(bad)]) == 2
    assert "corrupt" in _err_line(capsys)
    with pytest.raises(FileNotFoundError):  # --debug shows the real exception
        main(["--debug", "eval", str(tmp_path / "none.pt")])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_unavailable(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--device", "cuda", "--epochs", "1"]) == 2
    assert "CUDA is not available" in _err_line(capsys)


def test_distill_end_to_end_then_eval(tmp_path, capsys):
    recipe = write_tiny(tmp_path / "tiny.toml")
    out = tmp_path / "run"
    argv = ["distill", "--recipe", recipe, "--out", str(out), "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "stage  variant" in text and "float" in text and "rf" in text
    assert (out / "accuracy.png").exists() and (out / "summary.csv").exists()
    assert (out / "rf" / "stage3" / "best.pt").exists()
    # re-run: every stage skipped
    assert main(argv) == 0
    assert text.count("skipped") == 0 and capsys.readouterr().out.count("skipped") == 4

    final = out / "rf" / "stage3" / "best.pt"
    assert main(["eval", str(final), "--json", "--no-progress", "--device", "cpu"]) == 0
    res = json.loads(capsys.readouterr().out)
    summary = json.loads((out / "summary.json").read_text())
    assert res["samples"] == 12  # the test split recorded with the model
    assert res["oa"] == pytest.approx(summary[-1]["test_oa"])  # the stage's selected model
    # a 12-class model on a dataset with other classes is refused in one line
    assert main(["eval", str(final), "--dataset", "modelnet40", "--data-dir", str(tmp_path)]) == 2
    _err_line(capsys)


def test_train_command(tmp_path, capsys):
    out = tmp_path / "t"
    common = ["--points", "32", "--k", "4", "--widths", "8,8", "--emb-dims", "16", "--mlp", "8,8"]
    common += ["--train-samples", "20", "--test-samples", "12", "--batch-size", "8"]
    argv = ["train", "--out", str(out), "--epochs", "1", "--no-progress", "--device", "cpu"]
    assert main(argv + common) == 0
    assert "test OA" in capsys.readouterr().out
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["arch"] == "dgcnn" and cfg["train"]["epochs"] == 1
    # distil a binary student from it
    out2 = tmp_path / "s"
    argv2 = ["train", "--out", str(out2), "--epochs", "1", "--no-progress", "--device", "cpu"]
    argv2 += ["--model", "bindgcnn", "--variant", "bf2", "--stage", "1"]
    argv2 += ["--teacher", str(out / "best.pt")]
    assert main(argv2 + common) == 0
    cfg2 = json.loads((out2 / "config.json").read_text())
    assert cfg2["loss"]["kernel_s"] == "rbf_hamming" and cfg2["model"]["stage"] == 1
    assert main(["eval", str(out2 / "best.pt"), "--no-progress"]) == 0
    assert "OA" in capsys.readouterr().out
    assert main(argv2[:-2] + ["--init-from-teacher"] + common) == 2
    assert "needs --teacher" in _err_line(capsys)
