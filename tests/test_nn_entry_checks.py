"""Input handling of the point-cloud models and layers: dtypes cast or refused in one line,
values checked once at the model's entry and per layer only in debug mode; what ``import
bingnn.nn`` loads; the deprecated names of the point-set convolutions."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

import bingnn
import bingnn.nn as bnn
from bingnn.models import DGCNN, BinDGCNN
from bingnn.nn import BinPointEdgeConv, PointEdgeConv, XorPointEdgeConv

SMALL = dict(k=5, widths=(8, 8), emb_dims=16, mlp=(8, 8))


def models():
    torch.manual_seed(0)
    return [DGCNN(4, **SMALL).eval(), BinDGCNN(4, "bf2", **SMALL).eval(),
            BinDGCNN(4, "rf", "l2", **SMALL).eval()]


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64, torch.bfloat16])
def test_other_float_dtypes_are_cast_to_the_model_dtype(dtype: torch.dtype) -> None:
    x = torch.randn(2, 20, 3).to(dtype)
    for m in models():
        with torch.no_grad():
            got = m(x)
            want = m(x.float())
        assert got.dtype == torch.float32
        assert torch.equal(got, want)


def test_float64_model_takes_float32_points() -> None:
    m = DGCNN(4, **SMALL).double().eval()
    x = torch.randn(2, 20, 3)
    with torch.no_grad():
        assert torch.equal(m(x), m(x.double()))


@pytest.mark.parametrize(
    "x, exc, match",
    [
        (torch.zeros(2, 20, 3, dtype=torch.int64), TypeError, "floating point"),
        (torch.full((1, 20, 3), float("nan")), ValueError, "NaN or infinite"),
        (torch.full((1, 20, 3), 1e300, dtype=torch.float64), ValueError, "too large"),
        (torch.zeros(1, 20, 2), ValueError, r"\(B, N, 3\)"),
        (torch.zeros(1, 3, 3), ValueError, "only 3 points"),
    ],
)
def test_bad_points_get_one_clear_error(x, exc, match) -> None:
    for m in models():
        with pytest.raises(exc, match=match):
            m(x)


def count_isfinite(monkeypatch, fn) -> int:
    calls = []
    real = torch.isfinite

    def spy(t):
        calls.append(t.shape)
        return real(t)

    monkeypatch.setattr(torch, "isfinite", spy)
    fn()
    monkeypatch.setattr(torch, "isfinite", real)
    return len(calls)


def test_values_are_checked_once_at_entry_and_per_layer_in_debug(monkeypatch) -> None:
    x = torch.randn(2, 20, 3)
    for m in models():
        with torch.no_grad():
            assert count_isfinite(monkeypatch, lambda m=m: m(x)) == 1
            with bingnn.debug():
                assert bingnn.is_debug_enabled()
                per_layer = count_isfinite(monkeypatch, lambda m=m: m(x))
            assert not bingnn.is_debug_enabled()
        assert per_layer > len(m.convs)


@pytest.mark.parametrize("conv", [PointEdgeConv(4, 6, k=3), BinPointEdgeConv(4, 6, k=3),
                                  XorPointEdgeConv(4, 6, k=3, knn_metric="l2", edge_op="sub")])
def test_layers_scan_for_nan_in_debug_mode(conv) -> None:
    x = torch.randn(1, 9, 4)
    x[0, 2, 1] = float("nan")
    with bnn.debug(), pytest.raises(ValueError, match="NaN"):
        conv(x)
    bnn.set_debug(True)
    try:
        with pytest.raises(ValueError, match="NaN"):
            conv(x)
    finally:
        bnn.set_debug(False)


def test_layers_check_channels() -> None:
    with pytest.raises(ValueError, match="expected 4 input channels"):
        PointEdgeConv(4, 6, k=3)(torch.randn(1, 9, 5))


def test_deprecated_names_warn_and_alias() -> None:
    for old, new in (("EdgeConv", PointEdgeConv), ("BinEdgeConv", BinPointEdgeConv),
                     ("XorEdgeConv", XorPointEdgeConv)):
        for mod in (bnn, bnn.conv):
            with pytest.warns(DeprecationWarning, match=new.__name__):
                assert getattr(mod, old) is new
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bnn.PointEdgeConv is PointEdgeConv  # the new names do not warn


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_import_bingnn_nn_does_not_load_pytorch_geometric() -> None:
    r = run_python(
        "import sys, bingnn.nn, bingnn.models\n"
        "from bingnn.models import DGCNN, BinDGCNN\n"
        "assert 'torch_geometric' not in sys.modules, 'loaded'\n"
        "from bingnn.nn import BinSAGEConv\n"
        "assert 'torch_geometric' in sys.modules\n"
    )
    assert r.returncode == 0, r.stderr


def test_import_bingnn_nn_without_torch_says_what_to_install() -> None:
    r = run_python("import sys\nsys.modules['torch'] = None\nimport bingnn.nn\n")
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert 'pip install "bingnn[train]"' in last, last
    r = run_python("import sys\nsys.modules['torch'] = None\nimport bingnn, bingnn.engine\n"
                   "with bingnn.debug():\n    pass\n")
    assert r.returncode == 0, r.stderr
