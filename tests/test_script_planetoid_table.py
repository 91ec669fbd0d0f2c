"""scripts/planetoid_table.py: the docs table from finished and in-progress run folders."""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load():
    sys.path.insert(0, str(SCRIPTS))
    try:
        import planetoid_table
    finally:
        sys.path.remove(str(SCRIPTS))
    return planetoid_table


def _results(run: Path, accs: dict[int, list[float]]) -> None:
    run.mkdir(parents=True)
    with (run / "results.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seed", "stage", "variant", "test_acc"])
        for stage, values in accs.items():
            for seed, a in enumerate(values):
                w.writerow([seed, stage, "m", a])
            w.writerow(["mean", stage, "m", statistics.mean(values)])  # summary rows ignored


def test_finished_and_running_runs(tmp_path, capsys) -> None:
    mod = _load()
    accs = [0.80 + 0.01 * i for i in range(10)]
    _results(tmp_path / "cora-bingcn-distill", {s: accs for s in range(4)})
    _results(tmp_path / "cora-bingcn-scratch", {3: accs})
    # In progress: two finished cascade seeds (summary.csv) and one finished scratch seed.
    for seed in (0, 1):
        d = tmp_path / "citeseer-binsage-distill" / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "summary.csv").write_text("stage,variant,test_acc\n0,graphsage,0.7\n3,binsage,0.6\n")
    (tmp_path / "citeseer-binsage-distill" / "seed2").mkdir()  # started, not finished
    d = tmp_path / "citeseer-binsage-scratch" / "seed0"
    d.mkdir(parents=True)
    (d / "done.json").write_text(json.dumps({"test": {"acc": 0.65}}))
    assert mod.main([str(tmp_path)]) == 0
    rows = {tuple(line.split(" | ")[:2]): line for line in capsys.readouterr().out.splitlines()}
    cora = rows[("| cora", "GCN / BinGCN")]
    expect = f"{100 * statistics.mean(accs):.2f} ± {100 * statistics.stdev(accs):.2f} (n=10)"
    assert cora.count(expect) == 5
    sage = rows[("| citeseer", "GraphSAGE / BinSAGE")]
    assert sage.split(" | ")[2:] == ["running (2 of 10 seeds)", "running (1 of 10 seeds)",
                                     "not run", "not run", "running (2 of 10 seeds) |"]
    assert "not run" in rows[("| cora", "GraphSAGE / BinSAGE")]


def test_missing_folder_is_one_line(tmp_path, capsys) -> None:
    assert _load().main([str(tmp_path / "nope")]) == 2
    assert "run scripts/planetoid_graphs.sh first" in capsys.readouterr().err
