"""`bingnn export` and `bingnn infer` end to end (infer also with PyTorch blocked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import bingnn.engine
from bingnn.cli.main import main
from bingnn.data.synthetic import SYNTHETIC_CLASSES, make_synthetic_shapes
from bingnn.models import BinDGCNN
from bingnn.train.model_files import save_model_file

SMALL = dict(k=4, widths=(16, 16, 32, 64), emb_dims=32, mlp=(24, 16))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path, BinDGCNN]:
    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    model = BinDGCNN(num_classes=len(SYNTHETIC_CLASSES), variant="bf2", **SMALL).eval()
    ck = d / "final.pt"
    save_model_file(ck, model, {"config": {"data": {"dataset": "synthetic"}}})
    out = d / "model.bgnn"
    assert main(["export", str(ck), "-o", str(out)]) == 0
    return ck, out, model


def write_ply(path: Path, pts: np.ndarray) -> None:
    head = (f"ply\nformat ascii 1.0\nelement vertex {len(pts)}\nproperty float x\n"
            "property float y\nproperty float z\nend_header\n")
    path.write_text(head + "\n".join(" ".join(f"{v:.9g}" for v in p) for p in pts) + "\n")


def write_off(path: Path, pts: np.ndarray) -> None:
    body = "\n".join(" ".join(f"{v:.9g}" for v in p) for p in pts)
    path.write_text(f"OFF\n{len(pts)} 0 0\n{body}\n")


def test_export_writes_loadable_file_with_class_names(exported, capsys) -> None:
    _, out, model = exported
    em = bingnn.engine.load(out)
    assert em.class_names == list(SYNTHETIC_CLASSES)
    x, _ = make_synthetic_shapes(3, 40, seed=1)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).argmax(-1).numpy()
    np.testing.assert_array_equal(em.predict(x), want)


def test_infer_prints_labels_and_probabilities(exported, tmp_path, capsys) -> None:
    _, out, _ = exported
    x, _ = make_synthetic_shapes(3, 40, seed=2)
    np.save(tmp_path / "batch.npy", x[:2])
    write_ply(tmp_path / "one.ply", x[2])
    write_off(tmp_path / "one.off", x[2])
    import h5py

    with h5py.File(tmp_path / "two.h5", "w") as f:
        f.create_dataset("data", data=x[:2])
    capsys.readouterr()
    files = [str(tmp_path / n) for n in ("batch.npy", "one.ply", "one.off", "two.h5")]
    # Clouds as given (40 points, no normalisation): the engine's own probabilities.
    exact = ["--points", "40", "--no-normalize"]
    assert main(["infer", str(out), *files, "--top", "3", *exact]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6
    em = bingnn.engine.load(out)
    p = em.predict_proba(x)
    want_names = [SYNTHETIC_CLASSES[i] for i in p.argmax(-1)]
    names = [*want_names, want_names[2], *want_names[:2]]
    probs = [*p.max(-1), p[2].max(), *p.max(-1)[:2]]
    for line, name, prob in zip(lines, names, probs, strict=True):
        fields = line.split("\t")
        assert fields[1] == name
        assert abs(float(fields[2].split()[0]) - prob) < 1e-3
    assert lines[0].startswith(files[0] + "[0]") and lines[2].startswith(files[1])
    assert main(["infer", str(out), files[0], "--json", *exact]) == 0
    rows = [json.loads(r) for r in capsys.readouterr().out.strip().splitlines()]
    assert [r["label"] for r in rows] == want_names[:2]
    assert all(abs(sum(t["probability"] for t in r["top"]) - r["probability"]) < 1e-6
               for r in rows)


def test_cli_errors_are_one_line(exported, tmp_path, capsys) -> None:
    ck, out, _ = exported
    bad = tmp_path / "bad.bgnn"
    bad.write_bytes(out.read_bytes()[:100])
    np.save(tmp_path / "p.npy", np.zeros((40, 3), np.float32))
    assert main(["infer", str(bad), str(tmp_path / "p.npy")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bingnn: error:") and "truncated" in err and len(err.splitlines()) == 1
    np.save(tmp_path / "few.npy", np.zeros((2, 3), np.float32))
    assert main(["infer", str(out), str(tmp_path / "few.npy")]) == 1  # the file, not the call
    assert "k = 4" in capsys.readouterr().err
    stage1 = tmp_path / "s1.pt"
    save_model_file(stage1, BinDGCNN(num_classes=3, stage=1, **SMALL))
    assert main(["export", str(stage1), "-o", str(tmp_path / "x.bgnn")]) == 2
    assert "stage" in capsys.readouterr().err
    assert not (tmp_path / "x.bgnn").exists()


@pytest.mark.parametrize("module, args", [("infer_cmd", ""), ("main", "'infer', ")])
def test_infer_runs_without_torch(exported, tmp_path, module, args) -> None:
    """``bingnn infer`` and ``python -m bingnn.cli.infer_cmd`` with PyTorch unavailable."""
    _, out, _ = exported
    np.save(tmp_path / "p.npy", make_synthetic_shapes(1, 40, seed=3)[0])
    script = f"""
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, _Block())
from bingnn.cli.{module} import main
rc = main([{args}{str(out)!r}, {str(tmp_path / "p.npy")!r}])
print("torch" in sys.modules, rc)
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    *labels, last = res.stdout.strip().splitlines()
    assert last == "False 0" and labels[0].split("\t")[1] in SYNTHETIC_CLASSES


def test_training_commands_without_torch_say_what_is_missing(tmp_path) -> None:
    script = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("torch is blocked in this test", name="torch")
sys.meta_path.insert(0, _Block())
from bingnn.cli.main import main
print(main(["train", "--epochs", "1", "--out", {out!r}]),
      main(["train-node", "--dataset", "cora", "--model", "gcn"]))
""".format(out=str(tmp_path / "run"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.stdout.strip() == "2 2", res.stderr
    assert "'bingnn train' needs torch" in res.stderr
    assert "'bingnn train-node' needs torch" in res.stderr
    assert "Traceback" not in res.stderr


def test_export_never_destroys_the_checkpoint(exported, tmp_path, capsys) -> None:
    """Issue 11 finding 2: ``export X.pt -o X.pt`` used to replace the checkpoint (rc 0)."""
    ck, out, _ = exported
    mine = tmp_path / "final.pt"
    mine.write_bytes(ck.read_bytes())
    before = mine.read_bytes()
    assert main(["export", str(mine), "-o", str(mine)]) == 2
    err = capsys.readouterr().err
    assert "is the input checkpoint" in err and len(err.splitlines()) == 1
    assert mine.read_bytes() == before
    # --force does not make the input writable either.
    assert main(["export", str(mine), "-o", str(mine), "--force"]) == 2
    assert "is the input checkpoint" in capsys.readouterr().err
    assert mine.read_bytes() == before
    # Any existing file needs --force, a model file too.
    other = tmp_path / "notes.txt"
    other.write_text("keep me")
    assert main(["export", str(mine), "-o", str(other)]) == 2
    err = capsys.readouterr().err
    assert "--force" in err and len(err.splitlines()) == 1 and other.read_text() == "keep me"
    assert main(["export", str(mine), "-o", str(other), "--force"]) == 0
    assert bingnn.engine.load(other).variant == "bf2"
    dest = tmp_path / "m.bgnn"
    dest.write_bytes(b"an older model")
    assert main(["export", str(mine), "-o", str(dest), "--num-points", "40"]) == 2
    assert "--force" in capsys.readouterr().err and dest.read_bytes() == b"an older model"
    # With --force the model file is replaced; the training point count is recorded.
    assert main(["export", str(mine), "-o", str(dest), "--num-points", "40", "--force"]) == 0
    assert bingnn.engine.load(dest).num_points == 40
    assert "points=40" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.pt", "m.bgnn", "notes.txt"]


def test_export_without_overwrite_is_atomic(exported, tmp_path, monkeypatch) -> None:
    """A file that appears at the output while the model is folded is kept: the finished file
    takes the name only if it is still free (no check-then-replace race)."""
    import bingnn.export as bexport
    from bingnn.export import ExportError, export_checkpoint

    ck, _, _ = exported
    dest = tmp_path / "m.bgnn"
    real_fold = bexport.fold

    def fold_then_race(*args, **kwargs):
        result = real_fold(*args, **kwargs)
        dest.write_bytes(b"written meanwhile")
        return result

    monkeypatch.setattr(bexport, "fold", fold_then_race)
    with pytest.raises(ExportError, match="exists"):
        export_checkpoint(ck, dest, overwrite=False)
    assert dest.read_bytes() == b"written meanwhile"
    assert [p.name for p in tmp_path.iterdir()] == ["m.bgnn"]  # no temporary file left
    # The library default overwrites, like torch.save.
    monkeypatch.setattr(bexport, "fold", real_fold)
    export_checkpoint(ck, dest)
    assert bingnn.engine.load(dest).variant == "bf2"
    with pytest.raises(ExportError, match="input checkpoint"):
        export_checkpoint(ck, ck)


def test_export_to_a_directory_names_no_temp_file(exported, tmp_path, capsys) -> None:
    ck, _, _ = exported
    capsys.readouterr()
    assert main(["export", str(ck), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a directory" in err and ".tmp" not in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_export_node_model_from_training_checkpoint(tmp_path, capsys) -> None:
    """A checkpoint as train-node writes it (weights + model config) exports to a node model
    that the engine runs with the PyTorch model's predictions."""
    from bingnn.models import BinGCN
    from bingnn.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = BinGCN(12, 16, 2, 3).eval()
    ck = tmp_path / "best.pt"
    save_checkpoint(ck, {"model": model.state_dict(), "model_config": model.config})
    out = tmp_path / "gcn.bgnn"
    assert main(["export", str(ck), "-o", str(out)]) == 0
    assert "bingcn features=12 classes=3" in capsys.readouterr().out
    em = bingnn.engine.load(out)
    rng = np.random.default_rng(0)
    x = (rng.random((30, 12)) < 0.3).astype(np.float32)
    ei = rng.integers(0, 30, (2, 90))
    with torch.no_grad():
        want = model(torch.from_numpy(x), torch.from_numpy(ei)).argmax(-1).numpy()
    np.testing.assert_array_equal(em.predict(x, ei), want)
    assert main(["export", str(ck), "-o", str(tmp_path / "p.bgnn"), "--num-points", "9"]) == 2
    assert "point-cloud models only" in capsys.readouterr().err
