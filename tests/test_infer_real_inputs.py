"""`bingnn infer` and `EngineModel.predict` on real inputs: clouds of 10, 200, 1,024 and 5,000
points, meshes (.off/.obj/.ply), mixed good and bad files, normalisation on and off."""

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
from bingnn.data.point_files import read_point_clouds
from bingnn.data.resample import farthest_point_sampling, prepare_clouds
from bingnn.data.synthetic import SYNTHETIC_CLASSES
from bingnn.models import BinDGCNN
from bingnn.train.model_files import save_model_file

SMALL = dict(k=4, widths=(16, 16, 32, 64), emb_dims=32, mlp=(24, 16))
CUBE_V = np.array([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)])
CUBE_QUADS = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("infer")
    torch.manual_seed(1)
    model = BinDGCNN(num_classes=len(SYNTHETIC_CLASSES), variant="bf2", **SMALL).eval()
    # Untrained BatchNorm (mean 0, variance 1) makes every threshold 0: the answers would
    # hardly depend on the input. Random statistics give a model whose output does.
    g = torch.Generator().manual_seed(0)
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            n = mod.num_features
            mod.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            mod.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            if mod.affine:
                mod.weight.data.copy_(torch.randn(n, generator=g))
                mod.bias.data.copy_(torch.randn(n, generator=g) * 0.5)
    ck = d / "final.pt"
    save_model_file(ck, model, {"config": {"data": {"dataset": "synthetic"}}})
    out = d / "m.bgnn"
    assert main(["export", str(ck), "-o", str(out)]) == 0
    return out


def lines_of(capsys) -> tuple[list[list[str]], list[str]]:
    cap = capsys.readouterr()
    return [ln.split("\t") for ln in cap.out.strip().splitlines()], cap.err.strip().splitlines()


def ellipsoid(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True) * [3.0, 1.0, 0.5]


def reference_batch(clouds: list[np.ndarray], n: int) -> np.ndarray:
    """Resampling and normalisation written out with numpy: FPS (or repetition), centroid and
    radius over the distinct points kept."""
    out = []
    for c in clouds:
        c = c.astype(np.float64)
        if len(c) > n:
            c = c[farthest_point_sampling(c, n)]
            base = c
        else:
            base = c
            c = c[np.arange(n) % len(c)]
        mu = base.mean(0)
        r = np.sqrt(((base - mu) ** 2).sum(1)).max()
        out.append(((c - mu) / r).astype(np.float32))
    return np.stack(out)


def test_clouds_of_10_200_1024_5000_points(model_file, tmp_path, capsys):
    sizes = [10, 200, 1024, 5000]
    clouds = [ellipsoid(n, n) * 40 + 7 for n in sizes]  # raw units: off-centre, large
    files = []
    for n, c in zip(sizes, clouds, strict=True):
        files.append(str(tmp_path / f"c{n}.npy"))
        np.save(files[-1], c)
    assert main(["infer", str(model_file), *files, "--top", "2"]) == 0
    rows, err = lines_of(capsys)
    assert err == [] and [r[0] for r in rows] == files
    em = bingnn.engine.load(model_file)
    assert em.input_points is None  # this file records no N: the default 1024 is used
    proba = em.predict_proba(reference_batch(clouds, 1024))
    assert np.ptp(proba.max(1)) > 0.01  # the model's answers depend on the cloud
    for r, p in zip(rows, proba, strict=True):
        assert r[1] == SYNTHETIC_CLASSES[int(p.argmax())]
        assert abs(float(r[2].split()[0]) - p.max()) < 5e-4
    # The same files at another --points, and the Python face with a list of mixed sizes.
    assert main(["infer", str(model_file), *files, "--points", "64"]) == 0
    rows64, _ = lines_of(capsys)
    want64 = em.predict(reference_batch(clouds, 64))
    assert [r[1] for r in rows64] == [SYNTHETIC_CLASSES[i] for i in want64]
    em.meta["num_points"] = 64  # as a model file that records its training N
    np.testing.assert_array_equal(em.predict(clouds, normalize=True), want64)


def test_normalisation_makes_units_irrelevant_and_can_be_turned_off(model_file, tmp_path, capsys):
    c = ellipsoid(300, 2)
    np.save(tmp_path / "unit.npy", c)
    np.save(tmp_path / "mm.npy", c * 1000.0 + [250.0, -40.0, 3.0])
    files = [str(tmp_path / "unit.npy"), str(tmp_path / "mm.npy")]
    assert main(["infer", str(model_file), *files, "--top", "3", "--json"]) == 0
    a, b = (json.loads(r) for r in capsys.readouterr().out.strip().splitlines())
    assert a["top"] == b["top"] and len(a["top"]) == 3
    em = bingnn.engine.load(model_file)
    raw = em.predict_proba(c[None] * 1000.0 + [250.0, -40.0, 3.0], normalize=False)
    normed = em.predict_proba(c[None] * 1000.0 + [250.0, -40.0, 3.0], normalize=True)
    assert not np.allclose(raw, normed)
    assert main(["infer", str(model_file), files[1], "--no-normalize", "--points", "300"]) == 0
    rows, _ = lines_of(capsys)
    assert abs(float(rows[0][2]) - raw.max()) < 5e-4


def write_meshes(d: Path, scale: float = 50.0) -> list[Path]:
    v = CUBE_V * scale + 10
    off = d / "cube.off"
    off.write_text(f"OFF{len(v)} {len(CUBE_QUADS)} 0\n"
                   + "".join(" ".join(map(repr, p)) + "\n" for p in v.tolist())
                   + "".join(f"4 {' '.join(map(str, q))}\n" for q in CUBE_QUADS))
    obj = d / "cube.obj"
    obj.write_text("".join(f"v {x!r} {y!r} {z!r}\n" for x, y, z in v.tolist())
                   + "".join("f " + " ".join(str(i + 1) for i in q) + "\n" for q in CUBE_QUADS))
    ply = d / "cube.ply"
    head = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(v)}\n"
            "property float x\nproperty float y\nproperty float z\n"
            f"element face {len(CUBE_QUADS)}\nproperty list uchar int vertex_indices\n"
            "end_header\n").encode()
    body = v.astype("<f4").tobytes() + b"".join(
        bytes([4]) + np.array(q, "<i4").tobytes() for q in CUBE_QUADS)
    ply.write_bytes(head + body)
    return [off, obj, ply]


def test_meshes_are_sampled_on_the_surface(model_file, tmp_path, capsys):
    meshes = write_meshes(tmp_path)
    assert main(["infer", str(model_file), *map(str, meshes), "--points", "128"]) == 0
    rows, err = lines_of(capsys)
    assert err == [] and len(rows) == 3
    # The three files hold the same mesh, sampled with the same seed: the same answer.
    assert len({(r[1], r[2]) for r in rows}) == 1
    em = bingnn.engine.load(model_file)
    (pts,) = read_point_clouds(meshes[0], mesh_points=128, oversample=4, seed=0)
    assert np.allclose(np.abs(pts - 10).max(axis=1), 50, rtol=1e-5)  # on the cube's faces
    want = em.predict_proba(reference_batch([pts], 128))[0]
    assert abs(float(rows[0][2]) - want.max()) < 5e-4
    # Another seed samples other points.
    (other,) = read_point_clouds(meshes[0], mesh_points=128, oversample=4, seed=1)
    assert not np.array_equal(pts, other)


def test_mixed_good_and_bad_files(model_file, tmp_path, capsys):
    good = tmp_path / "good.npy"
    np.save(good, ellipsoid(100, 5))
    text = tmp_path / "text.npy"
    text.write_text("1 2 3\n")
    (tmp_path / "dir.npy").mkdir()
    few = tmp_path / "few.xyz"
    few.write_text("0 0 0\n1 0 0\n0 1 0\n")  # 3 points, k = 4
    (off,) = write_meshes(tmp_path)[:1]
    files = [good, text, tmp_path / "missing.ply", tmp_path / "dir.npy", few, off]
    rc = main(["infer", str(model_file), *map(str, files)])
    rows, err = lines_of(capsys)
    assert rc == 1
    assert [r[0] for r in rows] == [str(good), str(off)]
    assert len(err) == 5 and all(e.startswith("bingnn: error: ") for e in err[:4])
    assert "text.npy: a text file, not a NumPy .npy file" in err[0]
    assert "not found" in err[1] and "missing.ply" in err[1]
    assert "dir.npy: is a directory" in err[2]
    assert "few.xyz: 3 point(s), fewer than the model's k = 4" in err[3]
    assert err[4] == "bingnn: 4 of 6 file(s) could not be classified (see above)"


def test_model_option_and_usage_errors(model_file, tmp_path, capsys):
    np.save(tmp_path / "a.npy", ellipsoid(50, 1))
    assert main(["infer", "--model", str(model_file), str(tmp_path / "a.npy")]) == 0
    rows, _ = lines_of(capsys)
    assert len(rows) == 1
    assert main(["infer", str(tmp_path / "a.npy")]) == 2
    assert "give a model and at least one file" in capsys.readouterr().err
    assert main(["infer", str(tmp_path / "nope.bgnn"), str(tmp_path / "a.npy")]) == 2
    assert "model file not found" in capsys.readouterr().err


def test_infer_meshes_without_torch(model_file, tmp_path):
    meshes = write_meshes(tmp_path)
    script = f"""
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, _Block())
from bingnn.cli.infer_cmd import main
rc = main([{str(model_file)!r}, *{[str(m) for m in meshes]!r}, "--points", "64"])
print("torch" in sys.modules, rc)
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    *rows, last = res.stdout.strip().splitlines()
    assert last == "False 0" and len(rows) == 3


def test_engine_predict_list_and_resampled_arrays(model_file):
    em = bingnn.engine.load(model_file)
    clouds = [ellipsoid(n, n) for n in (10, 200, 5000)]
    got = em.predict(clouds)
    assert got.shape == (3,)
    np.testing.assert_array_equal(
        got, em.predict(prepare_clouds(clouds, 1024, min_points=4, normalize=False)))
    # An array already at the model's N (none recorded) runs exactly as given.
    x = ellipsoid(64, 3)[None].astype(np.float32)
    np.testing.assert_array_equal(em.logits(x), em.logits(x.copy(), normalize=False))
    with pytest.raises(ValueError, match="cloud 1: 2 point"):
        em.predict([ellipsoid(10, 1), ellipsoid(2, 1)])
