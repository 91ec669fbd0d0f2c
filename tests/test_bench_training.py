"""The training benchmark runs in smoke mode: one plain baseline and one fast row per model and
thread count, in the harness's row format (speed is measured by the benchmark, not asserted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_training_bench_smoke() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_training", BENCH / "bench_training.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        rows = mod.run(smoke=True, threads=[1], models=["DGCNN", "BF2 stage 3"])
    finally:
        sys.path.remove(str(BENCH))
    assert [(r["name"], r["impl"]) for r in rows] == [
        ("train step DGCNN", "plain (reference)"), ("train step DGCNN", "fast"),
        ("train step BF2 stage 3", "plain (reference)"), ("train step BF2 stage 3", "fast"),
    ]
    assert [r["baseline"] for r in rows] == [True, False, True, False]
    for r in rows:
        assert r["median_ms"] > 0 and r["clouds_per_s"] > 0 and r["cpu_ms"] > 0
        assert set(r["columns"]) == {"clouds/s", "peak MiB"}
    assert set(mod.MODELS) == {"DGCNN", "BF2 stage 1", "BF2 stage 2", "BF2 stage 3",
                               "RF stage 3"}
