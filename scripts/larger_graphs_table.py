"""The Markdown table of docs/results.md's "Larger real graphs" section, from the run folders
``scripts/larger_graphs.sh`` writes (their ``results.csv``: the mean and std rows over seeds).

    python scripts/larger_graphs_table.py [OUT [KEY:NAME ...]]

OUT defaults to runs/larger; KEY:NAME pairs name the data sets by their run-folder prefix
(default ``fb:"Facebook Page-Page" actor:Actor``; ``scripts/planetoid_graphs.sh`` writes
``cora``/``citeseer`` runs).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

DATASETS = (("fb", "Facebook Page-Page"), ("actor", "Actor"))
FAMILIES = (("gcn", "GCN", "bingcn"), ("sage", "GraphSAGE", "binsage"),
            ("sage", "GraphSAGE, sign messages", "binsage-signs"))


def _stats(path: Path, stage: int) -> dict[str, tuple[float, float, int]] | None:
    """``{"val": (mean, std, n), "test": (...)}`` of ``stage`` in a results.csv, in %."""
    if not path.is_file():
        return None
    rows = list(csv.DictReader(path.open()))
    mean = next((r for r in rows if r["seed"] == "mean" and int(r.get("stage") or 0) == stage),
                None)
    std = next((r for r in rows if r["seed"] == "std" and int(r.get("stage") or 0) == stage),
               None)
    if mean is None or std is None:
        return None
    n = int(mean["n"])
    return {k: (100 * float(mean[f"{k}_acc"]), 100 * float(std[f"{k}_acc"]), n)
            for k in ("val", "test")}


def _cell(s: dict | None) -> str:
    if s is None:
        return "not run"
    (tm, ts, n), (vm, vs, _) = s["test"], s["val"]
    seeds = "" if n == 10 else f", {n} seeds"
    return f"**{tm:.2f} ± {ts:.2f}** (val {vm:.2f} ± {vs:.2f}{seeds})"


def main(out: Path, datasets: tuple[tuple[str, str], ...] = DATASETS) -> None:
    print("| data set | model | float (stage 0) | binary from scratch | binary distilled "
          "(stage 3) | distilled − float |")
    print("|---|---|---|---|---|---|")
    for key, name in datasets:
        for _fam, label, binary in FAMILIES:
            cascade = out / f"{key}-{binary}-distill" / "results.csv"
            fl, st3 = _stats(cascade, 0), _stats(cascade, 3)
            if fl is None and st3 is None and "signs" in binary:
                continue  # an optional row (scripts/larger_graphs.sh runs it on Facebook only)
            scratch = _stats(out / f"{key}-{binary}-scratch" / "results.csv", 3)
            gap = "" if fl is None or st3 is None else f"{st3['test'][0] - fl['test'][0]:+.2f}"
            print(f"| {name} | {label} | {_cell(fl)} | {_cell(scratch)} | {_cell(st3)} | "
                  f"{gap} |")


if __name__ == "__main__":
    pairs = tuple(tuple(a.split(":", 1)) for a in sys.argv[2:])
    if any(len(p) != 2 for p in pairs):
        sys.exit("usage: larger_graphs_table.py [OUT [KEY:NAME ...]], e.g. cora:Cora")
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/larger"), pairs or DATASETS)
