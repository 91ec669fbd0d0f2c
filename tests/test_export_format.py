"""Model file (format 2): round trip, the checksum over description and version, format 1
files, validation of layers and arrays, unsupported models, atomic writes, bad inputs, and a
torch-free engine import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save

import bingnn.engine
from bingnn.engine import EngineModel, LegacyFormatWarning, ModelFileError
from bingnn.engine.format import (
    FORMAT_VERSION,
    checksum,
    parse_model_bytes,
    serialize_model,
    write_model_file,
)
from bingnn.engine.legacy import V1_RENAMES
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
    return export(model, tmp_path_factory.mktemp("m") / "model.bgnn", class_names=NAMES,
                  num_points=24)


def points(b: int = 2, n: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(b, n, 3)).astype(np.float32)


def header(data: bytes) -> dict:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n])


def contents(path: Path) -> tuple[dict, dict]:
    return parse_model_bytes(path.read_bytes(), str(path))


def test_round_trip_and_metadata(model, model_file) -> None:
    em = bingnn.engine.load(model_file)
    assert em.variant == "bf2" and em.k == 4 and em.class_names == NAMES
    assert em.num_points == 24 and em.task == "point_cloud_classification"
    x = points()
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(em.predict(x), want.argmax(-1))
    np.testing.assert_allclose(em.logits(x), want, rtol=1e-5, atol=1e-5)
    meta = header(model_file.read_bytes())["__metadata__"]
    assert set(meta) == {"format", "format_version", "model", "checksum"}
    assert meta["format"] == "bingnn-model" and meta["format_version"] == FORMAT_VERSION == "2.0"
    desc = json.loads(meta["model"])
    assert desc["variant"] == "bf2" and desc["input"] == {"channels": 3, "num_points": 24}
    assert desc["class_names"] == NAMES
    ops = [layer["op"] for layer in desc["layers"]]
    assert ops[:2] == ["knn", "xyz_edge_conv_bits"] and ops.count("xor_edge_conv") == 3
    assert ops[-1] == "float_linear" and "global_pool" in ops
    assert desc["layers"][0]["k"] == 4


def _resign(src: Path, dst: Path, edit_desc=None, arrays_update=None) -> Path:
    """A file with a changed description or arrays and a *valid* checksum (a crafted, not a
    corrupted file): only the layer validation can refuse it."""
    desc, arrays = contents(src)
    if edit_desc is not None:
        edit_desc(desc)
    arrays.update(arrays_update or {})
    dst.write_bytes(serialize_model(desc, arrays))
    return dst


def _edit_meta(src: Path, dst: Path, **meta_update) -> Path:
    """Rewrite metadata strings without recomputing the checksum (what corruption does)."""
    data = src.read_bytes()
    h = header(data)
    meta = h.pop("__metadata__")
    meta.update(meta_update)
    desc, arrays = contents(src)
    dst.write_bytes(save(arrays, metadata=meta))
    return dst


@pytest.mark.parametrize("old,new", [
    ('"k":4', '"k":5'),                    # the k-NN size of the first layer
    ('"a","b"', '"b","a"'),                # two class names swapped
    ('"variant":"bf2"', '"variant":"bf1"'),
    ('"num_points":24', '"num_points":25'),
])
def test_description_changes_are_refused(model_file, tmp_path, old, new) -> None:
    """Issue 11 finding 1: edits of the JSON description no longer load."""
    meta = header(model_file.read_bytes())["__metadata__"]
    assert old in meta["model"]
    bad = _edit_meta(model_file, tmp_path / "d.bgnn", model=meta["model"].replace(old, new, 1))
    with pytest.raises(ModelFileError, match="corrupt"):
        bingnn.engine.load(bad)


def test_version_is_checksummed(model_file, tmp_path) -> None:
    bad = _edit_meta(model_file, tmp_path / "v.bgnn", format_version="2.1")
    with pytest.raises(ModelFileError, match="corrupt"):
        bingnn.engine.load(bad)
    extra = _edit_meta(model_file, tmp_path / "x.bgnn", note="hello")
    with pytest.raises(ModelFileError, match="unexpected metadata"):
        bingnn.engine.load(extra)


def test_flipped_byte_in_class_name_is_detected(model_file, tmp_path) -> None:
    data = bytearray(model_file.read_bytes())
    pos = data.index(b'\\"e\\"')  # the last class name inside the escaped description
    data[pos + 2] ^= 0x20  # "e" -> "E"
    bad = tmp_path / "bad.bgnn"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupt"):
        bingnn.engine.load(bad)


def test_flipped_byte_in_arrays_is_detected(model_file, tmp_path) -> None:
    data = bytearray(model_file.read_bytes())
    data[-5] ^= 0x10  # inside the last array's payload
    bad = tmp_path / "bad.bgnn"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupt"):
        bingnn.engine.load(bad)


@pytest.mark.parametrize("keep", [0, 7, 8, 100, -1])
def test_truncated_file(model_file, tmp_path, keep: int) -> None:
    data = model_file.read_bytes()
    bad = tmp_path / "t.bgnn"
    bad.write_bytes(data[:keep] if keep >= 0 else data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        bingnn.engine.load(bad)


def test_missing_foreign_and_directory(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        bingnn.engine.load(tmp_path / "nope.bgnn")
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(save({"w": np.zeros(3, np.float32)}))
    with pytest.raises(ModelFileError, match="not a bingnn model"):
        bingnn.engine.load(foreign)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        bingnn.engine.load(tmp_path)


def test_newer_major_version_refused_minor_fields_ignored(model_file, tmp_path) -> None:
    newer = _edit_meta(model_file, tmp_path / "v.bgnn", format_version="3.0")
    with pytest.raises(ModelFileError, match="upgrade bingnn"):
        bingnn.engine.load(newer)

    def add_optional_fields(desc):
        desc["future_field"] = {"x": 1}
        desc["layers"][1]["future_param"] = 7

    ok = _resign(model_file, tmp_path / "m.bgnn", add_optional_fields)
    assert bingnn.engine.load(ok).variant == "bf2"

    def add_unknown_op(desc):
        desc["layers"].insert(2, {"op": "hyper_conv", "name": "new", "inputs": ["x0"],
                                  "outputs": ["y"]})

    bad = _resign(model_file, tmp_path / "o.bgnn", add_unknown_op)
    with pytest.raises(ModelFileError, match="unknown op 'hyper_conv'.*upgrade"):
        bingnn.engine.load(bad)


def _v1_file(model_file: Path, dst: Path, edit=None) -> Path:
    """The same model as format 1 wrote it: v1 array names, a flat description, a checksum of
    the arrays only."""
    desc, arrays = contents(model_file)
    back = {v: k for k, v in V1_RENAMES.items()}
    arrays = {back.get(k, k): v for k, v in arrays.items()}
    v1 = {"arch": "bindgcnn", "variant": "bf2", "k": 4, "num_classes": 5, "class_names": NAMES,
          "widths": [16, 16, 32, 64], "emb_dims": 32, "mlp": [24, 16],
          "graph_metric": "hamming", "input": {"shape": ["B", "N", 3], "min_points": 4},
          "source_config": desc["source_config"]}
    if edit:
        edit(v1)
    meta = {"format": "bingnn-model", "format_version": "1.0", "checksum": checksum(arrays),
            "model": json.dumps(v1, sort_keys=True)}
    dst.write_bytes(save(arrays, metadata=meta))
    return dst


def test_format1_files_are_converted_with_a_warning(model, model_file, tmp_path) -> None:
    old = _v1_file(model_file, tmp_path / "v1.bgnn")
    with pytest.warns(LegacyFormatWarning, match="re-export"):
        em = bingnn.engine.load(old)
    assert em.variant == "bf2" and em.k == 4 and em.num_points is None
    x = points()
    np.testing.assert_array_equal(em.logits(x), bingnn.engine.load(model_file).logits(x))
    # Its arrays are still checked against their checksum, its description strictly.
    data = bytearray(old.read_bytes())
    data[-5] ^= 0x10
    (tmp_path / "c.bgnn").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupt"):
        bingnn.engine.load(tmp_path / "c.bgnn")
    bad = _v1_file(model_file, tmp_path / "b.bgnn", lambda d: d.update(variant="bf9"))
    with warnings.catch_warnings(), pytest.raises(ModelFileError, match="variant"):
        warnings.simplefilter("ignore", LegacyFormatWarning)
        bingnn.engine.load(bad)


@pytest.mark.parametrize("name,value,match", [
    ("fc1.weight", lambda a: a[:-1], "fc1.weight"),
    ("fc1.weight", lambda a: a.astype(np.int64), "fc1.weight"),
    ("fc3.weight", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 3, np.nan, a)
     .astype(np.float32), "NaN or infinite"),
    ("pool.alpha", lambda a: np.full_like(a, np.inf), "NaN or infinite"),
    ("fc1_sign.lo", lambda a: np.full_like(a, np.inf), r"\+inf"),
    ("fc1_sign.hi", lambda a: np.full_like(a, np.nan), "NaN"),
    ("layer1.p_negate", lambda a: np.full_like(a, 2), "0/1"),
    ("layer0.weight", lambda a: np.full_like(a, np.inf), "NaN or infinite"),
    ("layer1.w_rel", lambda a: a | np.uint64(1 << 63), "padding"),
])
def test_bad_arrays_are_refused(model_file, tmp_path, name, value, match) -> None:
    desc, arrays = contents(model_file)
    bad = _resign(model_file, tmp_path / "a.bgnn", arrays_update={name: value(arrays[name])})
    with pytest.raises(ModelFileError, match=match):
        bingnn.engine.load(bad)


def test_real_first_layer_weights_load(model_file, tmp_path) -> None:
    """The xyz layer's weights may be real (a model trained with first_layer_binary=False):
    such a file loads and its logits follow the weights."""
    desc, arrays = contents(model_file)
    w = arrays["layer0.weight"] * np.linspace(0.5, 1.5, arrays["layer0.weight"].size,
                                              dtype=np.float32).reshape(
                                                  arrays["layer0.weight"].shape)
    real = bingnn.engine.load(_resign(model_file, tmp_path / "r.bgnn",
                                      arrays_update={"layer0.weight": w}))
    assert np.isfinite(real.logits(points())).all()
    assert not np.array_equal(real.logits(points()), bingnn.engine.load(model_file).logits(
        points()))


def test_predicates_may_use_infinities(model_file) -> None:
    """-inf / +inf disable one side of a threshold by design: such files load."""
    desc, arrays = contents(model_file)
    lo, hi = arrays["fc1_sign.lo"].copy(), arrays["fc1_sign.hi"].copy()
    lo[0], hi[1] = -np.inf, np.inf
    em = EngineModel(desc, {**arrays, "fc1_sign.lo": lo, "fc1_sign.hi": hi})
    assert np.isfinite(em.logits(points())).all()


@pytest.mark.parametrize("edit,match", [
    (lambda d: d["layers"][0].update(k=0), "k must be"),
    (lambda d: d["layers"][2].update(inputs=["nope"]), "no earlier layer"),
    (lambda d: d["layers"][3].update(name="layer1"), "unique"),
    (lambda d: d.update(num_classes=6), "class_names|logits"),
    (lambda d: d.update(task="regression"), "task"),
    (lambda d: d["layers"][-1].update(outputs=["scores"]), "named 'logits'"),
    (lambda d: d["layers"][0].update(op="signed_linear"), "not available"),
    (lambda d: d["layers"][0].update(op=[]), "unknown op"),  # found by the fuzzer
    (lambda d: d["layers"][1].update(inputs="x"), "list of value names"),
    (lambda d: d["input"].update(num_points=-3), "num_points"),
])
def test_bad_descriptions_are_refused(model_file, tmp_path, edit, match) -> None:
    bad = _resign(model_file, tmp_path / "d.bgnn", edit)
    with pytest.raises(ModelFileError, match=match):
        bingnn.engine.load(bad)


def test_extra_and_missing_arrays_are_refused(model_file, tmp_path) -> None:
    bad = _resign(model_file, tmp_path / "e.bgnn",
                  arrays_update={"stray.thing": np.zeros(2, np.float32)})
    with pytest.raises(ModelFileError, match="belong to no layer"):
        bingnn.engine.load(bad)
    desc, arrays = contents(model_file)
    del arrays["fc2.weight"]
    with pytest.raises(ModelFileError, match="missing array 'fc2.weight'"):
        EngineModel(desc, arrays)


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


def test_export_is_atomic_and_refuses_directories(model, tmp_path) -> None:
    dest = tmp_path / "m.bgnn"
    dest.write_bytes(b"previous")
    with pytest.raises(ExportError):
        export(BinDGCNN(num_classes=5, stage=1, **SMALL), dest)
    assert dest.read_bytes() == b"previous"
    desc, arrays = fold(model)
    write_model_file(dest, desc, arrays)
    assert bingnn.engine.load(dest).num_classes == 5
    assert [p.name for p in tmp_path.iterdir()] == ["m.bgnn"]  # no temp files left
    with pytest.raises(ExportError, match="is a directory"):
        export(model, tmp_path)


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


def test_point_count_is_recorded_and_used(model_file) -> None:
    """Issue 11 finding 4: the training point count travels in the file, and clouds of another
    size are brought to it before the forward pass (``bingnn.data.resample``)."""
    from bingnn.data.resample import to_model_input

    em = bingnn.engine.load(model_file)
    assert em.num_points == em.input_points == 24
    big = points(1, 30)
    np.testing.assert_array_equal(em.logits(big),
                                  em.logits(to_model_input(big, num_points=24, min_points=4,
                                                           normalize=False)))
    with pytest.raises(TypeError, match="point-cloud model"):
        em.predict(points(1, 24), np.zeros((2, 0), np.int64))


def test_engine_imports_and_runs_without_torch(model_file, tmp_path) -> None:
    np.save(tmp_path / "pts.npy", points(1, 24))
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
