"""The pretrained-model registry end to end: tiny models trained for one epoch on a ModelNet10-
layout fixture, packaged into a temporary model folder, loaded by name from PyTorch, from the
engine and by `bingnn infer`; cards, integrity checks and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import bingnn.engine
import bingnn.models
from bingnn.cli.main import main
from bingnn.data.hdf5_release import write_release
from bingnn.data.modelnet10 import CLASS_NAMES
from bingnn.data.synthetic import make_synthetic_shapes
from bingnn.pretrained import PRETRAINED_DIR_ENV, available
from bingnn.pretrained.card import CardError, read_card, validate_card
from bingnn.pretrained.package import PackagingError, package_run
from bingnn.pretrained.package import main as package_main
from bingnn.train.model_files import load_model_file

TINY = ["--points", "64", "--k", "4", "--widths", "8,8,8,8", "--emb-dims", "16", "--mlp",
        "16,8", "--epochs", "1", "--batch-size", "8", "--eval-batch-size", "16", "--no-progress"]
CMD = "bingnn train ... (a test fixture)"


def mn10_fixture(folder: Path) -> Path:
    """ModelNet10 layout, 10 classes, synthetic clouds (classes 0-9 of the synthetic set)."""
    splits = {}
    for split, m, seed in (("train", 80, 0), ("test", 30, 1)):
        x, y = make_synthetic_shapes(m * 2, 64, seed=seed, split=split)
        keep = np.flatnonzero(y < 10)[:m]
        splits[split] = (x[keep], y[keep], [f"s{i}.off" for i in keep])
    return write_release(folder, splits, CLASS_NAMES, "modelnet10_hdf5_64")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("pretrained")
    data = mn10_fixture(d / "modelnet10")
    common = ["--dataset", "modelnet10", "--data-dir", str(data), *TINY]
    assert main(["train", "--model", "dgcnn", "--out", str(d / "teacher"), *common]) == 0
    for v in ("bf2", "rf"):
        assert main(["train", "--model", "bindgcnn", "--variant", v, "--stage", "3",
                     "--out", str(d / v), *common]) == 0
    return d, data


@pytest.fixture(scope="module")
def packaged(runs):
    d, data = runs
    dest = d / "models"
    cards = {
        "modelnet10-dgcnn": package_run(d / "teacher", "modelnet10-dgcnn", command=CMD,
                                        data_dir=data, dest=dest, weights_dtype="float16",
                                        echo=lambda s: None),
        "modelnet10-bf2": package_run(d / "bf2", "modelnet10-bf2", command=CMD, data_dir=data,
                                      dest=dest, echo=lambda s: None),
    }
    # The RF student through the command-line entry point.
    assert package_main([str(d / "rf"), "--name", "modelnet10-rf", "--command", CMD,
                         "--data-dir", str(data), "--dest", str(dest)]) == 0
    cards["modelnet10-rf"] = read_card(dest / "modelnet10-rf.json")
    return d, data, dest, cards


@pytest.fixture
def registry(packaged, monkeypatch):
    d, data, dest, cards = packaged
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(dest))
    return d, data, dest, cards


def eval_json(ck: Path, data: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["eval", str(ck), "--data-dir", str(data), "--json", "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out)


def test_cards_hold_the_measured_accuracy(registry, capsys):
    d, data, dest, cards = registry
    assert sorted(available()) == sorted(cards)
    for name, run in (("modelnet10-bf2", "bf2"), ("modelnet10-rf", "rf")):
        info = bingnn.models.pretrained_info(name)
        assert info == cards[name]
        assert info["num_points"] == 64 and info["k"] == 4 and info["test_shapes"] == 30
        assert info["class_names"] == list(CLASS_NAMES)
        # Float32 weights: the card's figures are `bingnn eval` of the run's best.pt, and the
        # engine agrees with PyTorch.
        ev = eval_json(d / run / "best.pt", data, capsys)
        assert info["test_accuracy"] == pytest.approx(ev["oa"])
        assert info["mean_class_accuracy"] == pytest.approx(ev["macc"])
        assert info["engine_test_accuracy"] == pytest.approx(ev["oa"])
        assert "academic research" in info["license"] and info["command"] == CMD
        assert info["recipe"]["data"]["dataset"] == "modelnet10"
        assert info["training"]["epochs"] == 1
        md = (dest / f"{name}.md").read_text()
        assert f"bingnn infer --model {name}" in md and "academic research" in md
    total = sum(p.stat().st_size for p in dest.iterdir())
    assert total < 5_000_000


def test_pytorch_models_by_name(registry):
    d, _, _, cards = registry
    x = torch.from_numpy(make_synthetic_shapes(4, 64, seed=9)[0])
    student = bingnn.models.pretrained("modelnet10-bf2")
    assert not student.training
    trained, _ = load_model_file(d / "bf2" / "best.pt")
    for (k, a), b in zip(student.state_dict().items(), trained.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k
    with torch.no_grad():
        torch.testing.assert_close(student(x), trained(x))
    # The teacher ships in float16: its weights are the rounded ones, signs kept.
    teacher = bingnn.models.pretrained("modelnet10-dgcnn")
    t_run, _ = load_model_file(d / "teacher" / "best.pt")
    for (k, a), b in zip(teacher.state_dict().items(), t_run.state_dict().values(),
                         strict=True):
        if a.is_floating_point():
            torch.testing.assert_close(a, b.half().float(), atol=1e-7, rtol=0, msg=k)
            assert torch.equal(a >= 0, b >= 0), k
    assert cards["modelnet10-dgcnn"]["weights_dtype"] == "float16"
    assert cards["modelnet10-dgcnn"]["engine_test_accuracy"] is None


def test_engine_models_by_name_and_infer(registry, tmp_path, capsys):
    d, data, dest, _ = registry
    em = bingnn.engine.load("modelnet10-bf2")
    assert em.input_points == 64 and em.class_names == list(CLASS_NAMES)
    ref = bingnn.engine.load(dest / "modelnet10-bf2.bgnn")
    x = make_synthetic_shapes(3, 64, seed=4)[0]
    np.testing.assert_array_equal(em.logits(x), ref.logits(x))
    # A user's own mesh and scan, one command.
    chair = tmp_path / "chair.off"
    chair.write_text("OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n"
                     "3 1 2 3\n")
    scan = tmp_path / "scan.ply"
    pts = np.random.default_rng(0).normal(size=(3000, 3)) * 100
    scan.write_text("ply\nformat ascii 1.0\nelement vertex 3000\nproperty double x\n"
                    "property double y\nproperty double z\nend_header\n"
                    + "".join(f"{a} {b} {c}\n" for a, b, c in pts))
    capsys.readouterr()
    assert main(["infer", "--model", "modelnet10-bf2", str(chair), str(scan)]) == 0
    rows = [r.split("\t") for r in capsys.readouterr().out.strip().splitlines()]
    assert [r[0] for r in rows] == [str(chair), str(scan)]
    assert all(r[1] in CLASS_NAMES for r in rows)
    with pytest.raises(ValueError, match="modelnet10-dgcnn is a float teacher"):
        bingnn.engine.load("modelnet10-dgcnn")


def test_registered_but_not_installed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(tmp_path / "empty"))
    for call in (lambda: bingnn.models.pretrained("modelnet10-rf"),
                 lambda: bingnn.models.pretrained_info("modelnet10-bf2"),
                 lambda: bingnn.engine.load("modelnet10-bf2")):
        with pytest.raises(FileNotFoundError) as e:
            call()
        msg = str(e.value)
        assert "is registered but its model card is not installed" in msg and "\n" not in msg
    (tmp_path / "x.off").write_text("OFF\n0 0 0\n")
    assert main(["infer", "--model", "modelnet10-bf2", str(tmp_path / "x.off")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "registered but" in err
    with pytest.raises(ValueError, match="unknown pretrained model 'modelnet40-bf2'"):
        bingnn.models.pretrained_info("modelnet40-bf2")


def test_corrupt_files_are_refused(packaged, tmp_path, monkeypatch):
    _, _, dest, _ = packaged
    copy = tmp_path / "models"
    copy.mkdir()
    for p in dest.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(copy))
    raw = bytearray((copy / "modelnet10-bf2.safetensors").read_bytes())
    raw[-3] ^= 0x10
    (copy / "modelnet10-bf2.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CardError, match="SHA-256 .* differs from its card"):
        bingnn.models.pretrained("modelnet10-bf2")
    card = json.loads((copy / "modelnet10-rf.json").read_text())
    card["test_accuracy"] = 1.5
    (copy / "modelnet10-rf.json").write_text(json.dumps(card))
    with pytest.raises(CardError, match="test_accuracy must be a fraction"):
        bingnn.engine.load("modelnet10-rf")
    (copy / "modelnet10-dgcnn.json").write_text("{not json")
    with pytest.raises(CardError, match="not a JSON model card"):
        bingnn.models.pretrained_info("modelnet10-dgcnn")


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda c: c.pop("num_points"), "missing 'num_points'"),
        (lambda c: c.update(kind="float"), "kind must be"),
        (lambda c: c["files"].pop("engine"), "'engine' exactly for students"),
        (lambda c: c["files"]["weights"].update(name="../x.safetensors"), "bare file name"),
        (lambda c: c.update(card_version=99), "newer than this bingnn"),
        (lambda c: c.update(k=True), "'k' has the wrong type"),
    ],
)
def test_card_schema(packaged, mutate, match):
    card = json.loads(json.dumps(packaged[3]["modelnet10-bf2"]))
    mutate(card)
    with pytest.raises(CardError, match=match):
        validate_card(card)


def test_packaging_refusals(runs, tmp_path):
    d, data = runs
    kw = dict(command=CMD, data_dir=data, echo=lambda s: None)
    with pytest.raises(PackagingError, match=r"modelnet10-rf must be .*'variant': 'rf'"):
        package_run(d / "bf2", "modelnet10-rf", dest=tmp_path / "a", **kw)
    with pytest.raises(PackagingError, match="over the 0.01 MB budget"):
        package_run(d / "bf2", "modelnet10-bf2", dest=tmp_path / "b", max_total_bytes=10_000,
                    **kw)
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())
    unfinished = tmp_path / "run"
    unfinished.mkdir()
    with pytest.raises(PackagingError, match="not a finished run"):
        package_run(unfinished, "modelnet10-bf2", dest=tmp_path / "c", **kw)
    with pytest.raises(PackagingError, match="unknown pretrained name"):
        package_run(d / "bf2", "modelnet10-bf1", dest=tmp_path / "c", **kw)


def test_bundled_models_load_and_match_their_cards(monkeypatch):
    """The models shipped in the package folder: each card is valid and names its files (whose
    hashes loading checks), the PyTorch model classifies a cloud of its ``num_points`` into its
    classes, and a student's engine file agrees with its PyTorch model."""
    monkeypatch.delenv(PRETRAINED_DIR_ENV, raising=False)
    names = available()
    assert "modelnet10-dgcnn" in names  # shipped since the first ModelNet10 run
    x = make_synthetic_shapes(4, 512, seed=3, split="test")[0]
    for name in names:
        info = bingnn.models.pretrained_info(name)
        assert info["class_names"] == list(CLASS_NAMES)
        assert 0.5 <= info["test_accuracy"] <= 1.0 and 0.0 < info["mean_class_accuracy"] <= 1.0
        model = bingnn.models.pretrained(name)
        assert not model.training
        pts = torch.from_numpy(x[:, : info["num_points"]].copy())
        with torch.no_grad():
            logits = model(pts)
        assert logits.shape == (4, 10) and torch.isfinite(logits).all()
        if name != "modelnet10-dgcnn":
            em = bingnn.engine.load(name)
            np.testing.assert_array_equal(em.predict(pts.numpy()), logits.argmax(-1).numpy())
