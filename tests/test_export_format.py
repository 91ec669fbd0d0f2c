"""Model file: round trip, metadata, corruption/truncation/version errors, unsupported models,
atomic writes, bad inputs, and a torch-free engine import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

import bingnn.engine
from bingnn.engine import EngineModel, ModelFileError
from bingnn.engine.format import FORMAT_VERSION, checksum, write_model_file
from bingnn.export import ExportError, export, fold
from bingnn.models import DGCNN, BinDGCNN

SMALL = dict(k=4, widths=(16, 16, 32, 64), emb_dims=32, mlp=(24, 16))
NAMES = ["a", "b", "c", "d", "e"]


@pytest.fixture(scope="module")
def model() -> BinDGCNN:
    torch.manual_seed(0)
    return BinDGCNN(num_classes=5, variant="bf2", **SMALL).eval()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, model) -> Path:
    return export(model, tmp_path_factory.mktemp("m") / "model.bgnn", class_names=NAMES)


def points(b: int = 2, n: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(b, n, 3)).astype(np.float32)


def test_round_trip_and_metadata(model, model_file) -> None:
    em = bingnn.engine.load(model_file)
    assert em.variant == "bf2" and em.k == 4 and em.class_names == NAMES
    x = points()
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(em.predict(x), want.argmax(-1))
    np.testing.assert_allclose(em.logits(x), want, rtol=1e-4, atol=1e-4)
    from safetensors import safe_open

    with safe_open(str(model_file), framework="numpy") as f:
        meta = f.metadata()
        assert f.get_tensor("layer1.w_rel").dtype == np.uint64
    assert meta["format"] == "bingnn-model" and meta["format_version"] == FORMAT_VERSION
    desc = json.loads(meta["model"])
    assert desc["variant"] == "bf2" and desc["input"]["min_points"] == 4
    assert desc["class_names"] == NAMES


def _rewrite(src: Path, dst: Path, *, meta_update=None, arrays_update=None,
             keep_checksum=False) -> Path:
    from safetensors import safe_open

    with safe_open(str(src), framework="numpy") as f:
        meta = dict(f.metadata())
        arrays = {k: f.get_tensor(k) for k in f.keys()}
    arrays.update(arrays_update or {})
    if not keep_checksum:
        meta["checksum"] = checksum(arrays)
    meta.update(meta_update or {})
    save_file(arrays, str(dst), metadata=meta)
    return dst


def test_flipped_byte_is_detected(model_file, tmp_path) -> None:
    data = bytearray(model_file.read_bytes())
    data[-5] ^= 0x10  # inside the last array's payload
    bad = tmp_path / "bad.bgnn"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupt"):
        bingnn.engine.load(bad)


@pytest.mark.parametrize("keep", [0, 7, 100, -1])
def test_truncated_file(model_file, tmp_path, keep: int) -> None:
    data = model_file.read_bytes()
    bad = tmp_path / "t.bgnn"
    bad.write_bytes(data[:keep] if keep >= 0 else data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        bingnn.engine.load(bad)


def test_missing_and_foreign_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        bingnn.engine.load(tmp_path / "nope.bgnn")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(foreign))
    with pytest.raises(ModelFileError, match="not a bingnn model"):
        bingnn.engine.load(foreign)


def test_newer_major_version_refused_minor_accepted(model_file, tmp_path) -> None:
    major = int(FORMAT_VERSION.split(".")[0])
    newer = _rewrite(model_file, tmp_path / "v.bgnn",
                     meta_update={"format_version": f"{major + 1}.0"})
    with pytest.raises(ModelFileError, match="upgrade bingnn"):
        bingnn.engine.load(newer)
    minor = _rewrite(model_file, tmp_path / "m.bgnn",
                     meta_update={"format_version": f"{major}.{99}"})
    assert bingnn.engine.load(minor).variant == "bf2"


def test_wrong_array_shape_or_dtype(model_file, tmp_path) -> None:
    from safetensors import safe_open

    with safe_open(str(model_file), framework="numpy") as f:
        w = f.get_tensor("fc1.weight")
    bad = _rewrite(model_file, tmp_path / "s.bgnn", arrays_update={"fc1.weight": w[:-1]})
    with pytest.raises(ModelFileError, match="fc1.weight"):
        bingnn.engine.load(bad)
    bad = _rewrite(model_file, tmp_path / "d.bgnn",
                   arrays_update={"fc1.weight": w.astype(np.int64)})
    with pytest.raises(ModelFileError, match="fc1.weight"):
        bingnn.engine.load(bad)
    bad = _rewrite(model_file, tmp_path / "c.bgnn", meta_update={"model": "{not json"})
    with pytest.raises(ModelFileError, match="model description"):
        bingnn.engine.load(bad)
    desc = json.loads(json.dumps({"arch": "bindgcnn", "variant": "bf9"}))
    with pytest.raises(ModelFileError, match="variant"):
        EngineModel(desc, {})


@pytest.mark.parametrize("kw,match", [
    (dict(stage=2), "stage"),
    (dict(variant="bf2_bal"), "not supported"),
    (dict(rescale_points=24), "rescal"),
    (dict(rescale_neighbors=True), "rescal"),
    (dict(last_layer_binary=True), "last_layer_binary"),
])
def test_unsupported_models_refused(kw, match, tmp_path) -> None:
    opts = {"variant": "bf2", **SMALL, **kw}
    with pytest.raises(ExportError, match=match):
        export(BinDGCNN(num_classes=3, **opts), tmp_path / "x.bgnn")
    assert not (tmp_path / "x.bgnn").exists()
    with pytest.raises(ExportError, match="BinDGCNN"):
        fold(DGCNN(num_classes=3, k=4, widths=(8, 8, 8, 8), emb_dims=16, mlp=(8, 8)))


def test_export_is_atomic(model, tmp_path) -> None:
    dest = tmp_path / "m.bgnn"
    dest.write_bytes(b"previous")
    with pytest.raises(ExportError):
        export(BinDGCNN(num_classes=5, stage=1, **SMALL), dest)
    assert dest.read_bytes() == b"previous"
    desc, arrays = fold(model)
    write_model_file(dest, desc, arrays)
    assert bingnn.engine.load(dest).num_classes == 5
    assert [p.name for p in tmp_path.iterdir()] == ["m.bgnn"]  # no temp files left


@pytest.mark.parametrize("bad,err,match", [
    (np.zeros((2, 24, 2), np.float32), ValueError, r"\(B, N, 3\)"),
    (np.zeros((24,), np.float32), ValueError, r"\(B, N, 3\)"),
    (np.zeros((1, 2, 24, 3), np.float32), ValueError, r"\(B, N, 3\)"),
    (np.zeros((2, 24, 3), np.int64), TypeError, "float"),
    (np.zeros((2, 24, 3), bool), TypeError, "float"),
    (np.zeros((0, 24, 3), np.float32), ValueError, "empty batch"),
    (np.zeros((2, 3, 3), np.float32), ValueError, "k = 4"),
    (np.zeros((2, 0, 3), np.float32), ValueError, "k = 4"),
    (np.full((1, 24, 3), np.nan, np.float32), ValueError, "NaN"),
    (np.full((1, 24, 3), np.inf, np.float32), ValueError, "NaN or infinite"),
    (np.full((1, 24, 3), 1e300), ValueError, "infinite"),
    (torch.zeros(2, 24, 3), TypeError, "numpy"),
])
def test_bad_inputs(model_file, bad, err, match) -> None:
    em = bingnn.engine.load(model_file)
    with pytest.raises(err, match=match):
        em.predict(bad)


def test_engine_imports_and_runs_without_torch(model_file, tmp_path) -> None:
    np.save(tmp_path / "pts.npy", points(1, 30))
    script = f"""
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, _Block())
import numpy as np
import bingnn.engine
from bingnn.data.point_files import read_point_clouds
m = bingnn.engine.load({str(model_file)!r})
x = np.stack(read_point_clouds({str(tmp_path / "pts.npy")!r}))
print(int(m.predict(x)[0]), "torch" in sys.modules)
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    label, torch_loaded = out.stdout.split()
    assert torch_loaded == "False" and 0 <= int(label) < 5
