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
        (["distill", "--last-stage", "4"], "invalid choice"),
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
    assert main([*argv, "--last-stage", "1"]) == 0  # the teacher and stage 1 only
    assert (out / "rf" / "stage1" / "done.json").exists()
    assert not (out / "rf" / "stage2").exists()
    capsys.readouterr()
    assert main(argv) == 0  # continues with stages 2 and 3
    text = capsys.readouterr().out
    assert "stage  variant" in text and "float" in text and "rf" in text
    assert text.count("skipped") == 2
    assert (out / "accuracy.png").exists() and (out / "summary.csv").exists()
    assert (out / "rf" / "stage3" / "best.pt").exists()
    # re-run: every stage skipped
    assert main(argv) == 0
    assert capsys.readouterr().out.count("skipped") == 4

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


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A training checkpoint, the .bgnn exported from it, a point-cloud .npy and a folder."""
    import numpy as np

    from bingnn.models import BinDGCNN
    from bingnn.train.model_files import save_model_file

    d = tmp_path_factory.mktemp("models")
    model = BinDGCNN(num_classes=4, variant="bf2", k=4, widths=(8, 8, 8, 16), emb_dims=16,
                     mlp=(8, 8)).eval()
    ck = d / "final.pt"
    save_model_file(ck, model)
    bgnn = d / "model.bgnn"
    assert main(["export", str(ck), "-o", str(bgnn)]) == 0
    npy = d / "cloud.npy"
    np.save(npy, np.zeros((32, 3), np.float32))
    folder = d / "run.pt"
    folder.mkdir()
    return {"ck": ck, "bgnn": bgnn, "npy": npy, "folder": folder}


def _model_commands(path, tmp_path):
    """The commands that take a training checkpoint: eval, export and train --teacher."""
    return [
        ["eval", str(path)],
        ["export", str(path), "-o", str(tmp_path / "out.bgnn")],
        ["train", "--model", "bindgcnn", "--teacher", str(path), "--out", str(tmp_path / "s")],
    ]


@pytest.mark.parametrize(
    "kind, needle",
    [
        ("bgnn", "is an exported engine model (.bgnn), not a bingnn checkpoint"),
        ("npy", "is a numpy array file (.npy), not a bingnn checkpoint"),
    ],
)
def test_other_files_given_as_checkpoints_say_what_they_are(model_files, tmp_path, capsys,
                                                             kind, needle):
    for argv in _model_commands(model_files[kind], tmp_path):
        assert main(argv) == 2, argv
        err = _err_line(capsys)
        assert needle in err and "bingnn infer" in err, argv
        assert "weights_only" not in err, argv  # no advice to load unsafely
    assert not (tmp_path / "out.bgnn").exists()


def test_a_folder_given_as_a_model_is_called_a_folder(model_files, tmp_path, capsys):
    folder = model_files["folder"]
    argvs = _model_commands(folder, tmp_path)
    argvs.append(["infer", str(folder), str(model_files["npy"])])
    for argv in argvs:
        assert main(argv) == 2, argv
        err = _err_line(capsys)
        assert f"{folder} is a folder" in err and "not found" not in err, argv


def test_out_that_is_a_file_is_refused_in_words(model_files, tmp_path, capsys):
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me")
    for argv in (
        ["train", "--epochs", "1", "--out", str(taken)],
        ["distill", "--recipe", "quick", "--out", str(taken)],
        ["distill", "--recipe", "quick", "--out", str(taken / "sub")],
        ["train-node", "--dataset", "cora", "--model", "gcn", "--out", str(taken)],
    ):
        assert main(argv) == 2, argv
        err = _err_line(capsys)
        assert f"--out {argv[-1]} is not a folder" in err and "Errno" not in err, argv
    assert main(["export", str(model_files["ck"]), "-o", str(taken / "m.bgnn")]) == 2
    err = _err_line(capsys)
    assert f"{taken} is a file where a folder is needed" in err and "Errno" not in err
    assert taken.read_text() == "keep me"


def test_infer_of_h5_without_h5py_says_what_to_install(model_files, tmp_path, capsys,
                                                        monkeypatch):
    import sys

    h5 = tmp_path / "clouds.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n")
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now fails
    # A file that cannot be read fails alone (exit 1), with a line that says what to install.
    assert main(["infer", str(model_files["bgnn"]), str(h5)]) == 1
    err = capsys.readouterr().err
    assert "pip install h5py" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "error, needle",
    [
        (ModuleNotFoundError("no torch", name="torch.nn"),
         """'bingnn train' needs torch, which is not installed: pip install "bingnn[train]\""""),
        (ModuleNotFoundError("no pyg", name="torch_geometric"), 'pip install "bingnn[train]"'),
        (ModuleNotFoundError("no ogb", name="ogb.nodeproppred"), 'pip install "bingnn[ogb]"'),
        (ModuleNotFoundError("no h5py", name="h5py"), "pip install h5py"),
        (ModuleNotFoundError("no foo", name="foo"), "pip install foo"),
        (ModuleNotFoundError("no ext", name="bingnn._native"), "native extension is not built"),
        (ImportError("reading .h5 needs h5py: pip install h5py\nmore"),
         "reading .h5 needs h5py: pip install h5py"),
    ],
)
def test_missing_modules_get_an_install_line(monkeypatch, capsys, error, needle):
    import bingnn.cli.train_cmd as train_cmd

    def fail(args):
        raise error

    monkeypatch.setattr(train_cmd, "run", fail)
    assert main(["train", "--out", "x"]) == 2
    err = _err_line(capsys)
    assert needle in err and "more" not in err


def test_import_errors_inside_bingnn_are_bugs_not_missing_packages(monkeypatch):
    import bingnn.cli.train_cmd as train_cmd

    def fail(args):
        raise ImportError("cannot import name 'x' from 'bingnn.nn'", name="bingnn.nn")

    monkeypatch.setattr(train_cmd, "run", fail)
    with pytest.raises(ImportError, match="cannot import name"):
        main(["train", "--out", "x"])
