"""`bingnn export --class-names FILE` says what is wrong with a file that is not a list of names
(issue 11 finding 7: a binary file gave a bare codec error)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bingnn.cli.main import main
from bingnn.models import BinDGCNN
from bingnn.train.model_files import save_model_file

SMALL = dict(k=4, widths=(16, 16, 32, 64), emb_dims=32, mlp=(24, 16))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("names")
    torch.manual_seed(0)
    ck = d / "final.pt"
    save_model_file(ck, BinDGCNN(num_classes=3, variant="bf2", **SMALL).eval())
    return ck


def test_binary_names_file(checkpoint, tmp_path, capsys):
    np.save(tmp_path / "names.npy", np.arange(3))
    out = tmp_path / "m.bgnn"
    assert main(["export", str(checkpoint), "-o", str(out), "--class-names",
                 str(tmp_path / "names.npy")]) == 2
    err = capsys.readouterr().err
    assert "codec" not in err and len(err.splitlines()) == 1
    assert "names.npy: binary data, not a text file of class names" in err
    assert not out.exists()


def test_directory_and_good_names(checkpoint, tmp_path, capsys):
    out = tmp_path / "m.bgnn"
    assert main(["export", str(checkpoint), "-o", str(out), "--class-names", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    (tmp_path / "names.txt").write_text("chair\ntable\n\nlamp\n", encoding="utf-8")
    assert main(["export", str(checkpoint), "-o", str(out), "--class-names",
                 str(tmp_path / "names.txt")]) == 0
    import bingnn.engine

    assert bingnn.engine.load(out).class_names == ["chair", "table", "lamp"]
