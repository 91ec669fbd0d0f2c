"""The benchmark harness: thread parsing, speed-up bookkeeping, discovery, and one smoke bench."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def harness():
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # puts benchmarks/ on sys.path for the bench modules
    return mod


def test_parse_threads(harness):
    assert harness.parse_threads("1") == [1]
    assert harness.parse_threads("1,all") == list(dict.fromkeys([1, os.cpu_count() or 1]))
    assert harness.parse_threads("3, 1,3") == [3, 1]
    for bad in ("0", "two", ",", "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            harness.parse_threads(bad)


def test_speedup_is_against_the_baseline_of_its_group(harness):
    rows = [
        {
            "name": "op",
            "shape": "s",
            "threads": 1,
            "impl": "ref",
            "median_ms": 8.0,
            "baseline": True,
        },
        {"name": "op", "shape": "s", "threads": 1, "impl": "fast", "median_ms": 2.0},
        {"name": "op", "shape": "s", "threads": 2, "impl": "fast", "median_ms": 1.0},
    ]
    harness.add_ratios(rows)
    assert [r["speedup"] for r in rows] == [1.0, 4.0, None]  # no baseline for threads = 2
    table = harness.format_table(rows)
    assert "4.0x" in table and "ref (baseline)" in table


def test_discover_finds_every_bench_module(harness):
    names = {m.__name__ for m in harness.discover()}
    expected = {p.stem for p in BENCH.glob("bench_*.py")}
    assert names == expected and {"bench_gemm", "bench_knn"} <= names
    with pytest.raises(SystemExit, match="no benchmark named"):
        harness.discover(["no_such_bench"])


def test_gemm_smoke_rows_and_json(harness, tmp_path):
    out = tmp_path / "r.json"
    assert harness.main(["--smoke", "--threads", "1", "--only", "gemm", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    rows = payload["rows"]
    assert rows and payload["smoke"] is True
    groups = {(r["name"], r["shape"], r["threads"]) for r in rows}
    for g in groups:
        members = [r for r in rows if (r["name"], r["shape"], r["threads"]) == g]
        assert sum(bool(r["baseline"]) for r in members) == 1
        assert all(r["median_ms"] > 0 and r["speedup"] > 0 for r in members)
    assert str(BENCH) in sys.path
