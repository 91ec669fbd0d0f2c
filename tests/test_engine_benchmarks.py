"""The end-to-end and model-size benchmarks run in smoke mode and keep the size target."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(BENCH))


def test_model_size_target() -> None:
    rows = load("bench_model_size").run(smoke=True, threads=[1])
    by_impl = {r["impl"].split(":")[0]: r for r in rows}
    base = by_impl["DGCNN float32 state dict"]["bytes"]
    for label in ("BF2", "RF"):
        packed = by_impl[f"BinDGCNN {label} .bgnn"]["bytes"]
        # The packed file holds 1 bit per binary weight: at most 1/20 of the float32 model.
        assert packed * 20 <= base, (label, packed, base)
        latent = by_impl[f"BinDGCNN {label} latent float32 state dict"]["bytes"]
        assert latent > base * 0.9  # the same model kept by PyTorch is not smaller


@pytest.mark.slow
def test_end_to_end_smoke() -> None:
    rows = load("bench_end_to_end").run(smoke=True, threads=[1])
    impls = {r["impl"] for r in rows}
    assert {"DGCNN float32, eager PyTorch", "DGCNN float32, ONNX Runtime",
            "BinDGCNN BF2, bingnn engine", "BinDGCNN RF, bingnn engine"} <= impls
    assert all(r["median_ms"] > 0 for r in rows)
    assert sum(r["baseline"] for r in rows) == len({(r["shape"], r["threads"]) for r in rows})
