"""The training benchmark runs in smoke mode: one plain baseline and one fast row per model and
thread count, in the harness's row format (speed is measured by the benchmark, not asserted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench():
    """benchmarks/bench_training.py as a module (its folder on the path for its imports)."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_training", BENCH / "bench_training.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path.remove(str(BENCH))


def test_training_bench_smoke(bench) -> None:
    rows = bench.run(smoke=True, threads=[1], models=["DGCNN", "BF2 stage 3"])
    assert [(r["name"], r["impl"]) for r in rows] == [
        ("train step DGCNN", "plain (reference)"), ("train step DGCNN", "fast"),
        ("train step BF2 stage 3", "plain (reference)"), ("train step BF2 stage 3", "fast"),
    ]
    assert [r["baseline"] for r in rows] == [True, False, True, False]
    for r in rows:
        assert r["median_ms"] > 0 and r["clouds_per_s"] > 0 and r["cpu_ms"] > 0
        assert set(r["columns"]) == {"clouds/s", "peak MiB"}
    assert set(bench.MODELS) == {"DGCNN", "BF2 stage 1", "BF2 stage 2", "BF2 stage 3",
                                 "BF2 stage 3 + shortcuts", "RF stage 1", "RF stage 2",
                                 "RF stage 3"}


def test_training_bench_command_line(bench, tmp_path, capsys) -> None:
    """The stand-alone command (other batch sizes than run.py's) prints the table, writes the
    rows and refuses bad sizes in one line."""
    import json

    out = tmp_path / "rows.json"
    assert bench.main(["--batch", "2", "--points", "24", "--k", "4", "--repeats", "1",
                       "--models", "DGCNN", "--out", str(out)]) == 0
    assert "train step DGCNN" in capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert [r["shape"] for r in rows] == ["B=2 N=24 k=4"] * 2
    assert rows[0]["speedup"] == 1.0 and rows[1]["speedup"] > 0
    for bad in (["--batch", "0"], ["--models", "VGG"]):
        with pytest.raises(SystemExit) as e:
            bench.main(bad)
        assert e.value.code == 2
        assert "error: " in capsys.readouterr().err.strip().splitlines()[-1]


def test_distillation_step_breakdown(bench, capsys) -> None:
    """--distill adds the whole BF2 stage-1 distillation step (baseline) and its three parts."""
    rows = bench.distill_rows([1], batch=2, repeats=1, points=24, k=4)
    assert [r["impl"] for r in rows] == ["whole step", "teacher forward",
                                         "student forward + backward (CE)",
                                         "LSP forward + backward"]
    assert [r["baseline"] for r in rows] == [True, False, False, False]
    assert all(r["median_ms"] > 0 for r in rows)
    assert bench.main(["--batch", "2", "--points", "24", "--k", "4", "--repeats", "1",
                       "--models", "DGCNN", "--distill"]) == 0
    assert "distill step BF2 stage 1" in capsys.readouterr().out
    # any student, from the previous stage of its cascade
    rows = bench.distill_rows([1], batch=2, repeats=1, points=24, k=4,
                              students=["RF stage 3", "BF2 stage 2"])
    assert [r["name"] for r in rows[::4]] == ["distill step RF stage 3",
                                             "distill step BF2 stage 2"]
    assert bench.main(["--batch", "2", "--points", "24", "--k", "4", "--repeats", "1",
                       "--models", "DGCNN", "--distill", "RF stage 2"]) == 0
    assert "distill step RF stage 2" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.main(["--models", "DGCNN", "--distill", "RF stage 9"])


def test_eval_forward_rows(bench, capsys) -> None:
    """--eval adds, per model, the plain (baseline) and the fast eval-mode forward."""
    rows = bench.eval_rows(["RF stage 3", "BF2 stage 2"], [1], batch=2, repeats=1, points=24,
                           k=4)
    assert [(r["name"], r["impl"]) for r in rows] == [
        ("eval forward RF stage 3", "plain (reference)"), ("eval forward RF stage 3", "fast"),
        ("eval forward BF2 stage 2", "plain (reference)"), ("eval forward BF2 stage 2", "fast")]
    assert [r["baseline"] for r in rows] == [True, False, True, False]
    assert all(r["median_ms"] > 0 for r in rows)
    assert bench.main(["--batch", "2", "--points", "24", "--k", "4", "--repeats", "1",
                       "--models", "RF stage 2", "--eval"]) == 0
    assert "eval forward RF stage 2" in capsys.readouterr().out
