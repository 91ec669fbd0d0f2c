"""The core install (``pip install bingnn``: numpy, safetensors, the native extension; no
PyTorch) runs ``bingnn infer`` on a model exported by the training install.

Opt-in (``python -m pytest -m install``; CI runs it): it copies the source tree, creates a
fresh virtual environment, builds the extension and installs the package from the copy, which
takes minutes and needs the package index (or a local mirror) for numpy, safetensors and the
build requirements.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
import torch

from bingnn.data.resample import normalize_unit_sphere
from bingnn.data.synthetic import SYNTHETIC_CLASSES, make_synthetic_shapes
from bingnn.engine import load
from bingnn.export import export
from bingnn.models import BinDGCNN

pytestmark = pytest.mark.install

REPO = Path(__file__).resolve().parents[1]
#: Left out of the copy: build outputs of the checkout (a prebuilt extension must not leak in)
#: and caches.
_IGNORE = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "*.so", "__pycache__", ".pytest_cache",
    ".ruff_cache", ".hypothesis", "runs", "results", ".venv", "*.bgnn",
)


def _run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 1200):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def core_env(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A fresh venv with ``pip install <copy of the repository>`` (no extras)."""
    root = tmp_path_factory.mktemp("core")
    src = root / "bingnn-src"
    shutil.copytree(REPO, src, ignore=_IGNORE)
    venv.create(root / "venv", with_pip=True, clear=True)
    bindir = root / "venv" / ("Scripts" if os.name == "nt" else "bin")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join([str(bindir), env.get("PATH", "")])
    env["VIRTUAL_ENV"] = str(root / "venv")
    res = _run([bindir / "python", "-m", "pip", "install", "--no-cache-dir", src], env, root)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return bindir, env


def test_core_install_has_no_torch_and_infers(core_env, tmp_path: Path) -> None:
    bindir, env = core_env
    py = bindir / "python"
    # What the core install brought: no PyTorch, no PyG, no training-only packages.
    res = _run([py, "-m", "pip", "list", "--format", "json"], env, tmp_path)
    assert res.returncode == 0, res.stderr
    names = {p["name"].lower().replace("_", "-") for p in json.loads(res.stdout)}
    assert {"bingnn", "numpy", "safetensors"} <= names
    assert not names & {"torch", "torch-geometric", "scipy", "h5py", "tqdm", "matplotlib"}

    # A tiny model exported with this (training) environment...
    torch.manual_seed(0)
    model = BinDGCNN(num_classes=len(SYNTHETIC_CLASSES), variant="bf2", k=4,
                     widths=(16, 16, 32, 64), emb_dims=32, mlp=(24, 16)).eval()
    bgnn = export(model, tmp_path / "model.bgnn", class_names=list(SYNTHETIC_CLASSES))
    clouds = make_synthetic_shapes(3, 64, seed=1, split="test")[0]
    np.save(tmp_path / "clouds.npy", clouds)
    # `bingnn infer` centres and scales each cloud into the unit sphere unless --no-normalize;
    # --points 64 keeps the clouds at their size (the default resamples to the model's points).
    normed = np.stack([normalize_unit_sphere(c) for c in clouds]).astype(np.float32)
    want = {}
    for name, batch in (("raw", clouds), ("normed", normed)):
        with torch.no_grad():
            labels = model(torch.from_numpy(batch)).argmax(-1).tolist()
        assert load(bgnn).predict(batch).tolist() == labels
        want[name] = [SYNTHETIC_CLASSES[i] for i in labels]

    # ... classified by the core install's `bingnn infer`, the installed copy (not this tree).
    for flags, expect in (([], want["normed"]), (["--no-normalize"], want["raw"])):
        res = _run([bindir / "bingnn", "infer", bgnn, tmp_path / "clouds.npy", "--json",
                    "--points", "64", *flags],
                   env, tmp_path)
        assert res.returncode == 0, res.stderr
        rows = [json.loads(line) for line in res.stdout.splitlines()]
        assert [r["label"] for r in rows] == expect, flags
    res = _run([py, "-c", "import bingnn, sys; print(bingnn.__file__, 'torch' in sys.modules)"],
               env, tmp_path)
    path, torch_loaded = res.stdout.split()
    assert Path(path).is_relative_to(bindir.parent) and torch_loaded == "False"

    # Without the train extra: training commands and HDF5 inputs say what to install.
    res = _run([bindir / "bingnn", "train", "--out", tmp_path / "run"], env, tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "'bingnn train' needs torch" in res.stderr and 'pip install "bingnn[train]"' in (
        res.stderr)
    (tmp_path / "clouds.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    res = _run([bindir / "bingnn", "infer", bgnn, tmp_path / "clouds.h5"], env, tmp_path)
    # A file infer cannot read is reported on its own line and the run exits 1 (like any bad
    # input file among several), followed by the count of files left unclassified.
    assert res.returncode == 1 and "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 2 and "pip install h5py" in lines[0] and "1 of 1 file" in lines[1]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-m", "install", "-q"]))
