"""The Markdown table of docs/results.md's Planetoid section, from the run folders
``scripts/planetoid_graphs.sh`` writes: test accuracy (mean ± sample std over the seeds) of the
float model (stage 0), the binary model trained from scratch and the distilled stages 1-3,
per data set and model. A cell whose run has fewer than ten finished seeds says so.

    python scripts/planetoid_table.py [OUT]

OUT defaults to runs/planetoid.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path

DATASETS = ("cora", "citeseer")
MODELS = (("bingcn", "GCN / BinGCN"), ("binsage", "GraphSAGE / BinSAGE"))
SEEDS = 10


def seed_accuracies(run: Path, stage: int) -> list[float]:
    """Test accuracy (%) of ``stage`` for every finished seed: the run's results.csv, or while
    the run is in progress each finished seed's summary.csv (cascades) or done.json."""
    path = run / "results.csv"
    if path.is_file():
        return [100 * float(r["test_acc"]) for r in csv.DictReader(path.open())
                if r["seed"].isdigit() and int(r["stage"]) == stage]
    values = []
    for seed in sorted(run.glob("seed*"), key=lambda p: int(p.name[4:] or 0)):
        if (seed / "summary.csv").is_file():
            values += [100 * float(r["test_acc"]) for r in csv.DictReader(
                (seed / "summary.csv").open()) if int(r["stage"]) == stage]
        elif (seed / "done.json").is_file() and stage == 3:
            values.append(100 * float(json.loads((seed / "done.json").read_text())["test"]["acc"]))
    return values


def cell(values: list[float]) -> str:
    if len(values) < SEEDS:
        return f"running ({len(values)} of {SEEDS} seeds)" if values else "not run"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} (n={len(values)})"


def table(out: Path) -> str:
    lines = ["| dataset | model | float (stage 0) | binary, from scratch | distilled stage 1 (tanh)"
             " | distilled stage 2 (binary act.) | distilled stage 3 (fully binary) |",
             "|---|---|---|---|---|---|---|"]
    for ds in DATASETS:
        for model, name in MODELS:
            distill, scratch = out / f"{ds}-{model}-distill", out / f"{ds}-{model}-scratch"
            cells = [cell(seed_accuracies(distill, 0)), cell(seed_accuracies(scratch, 3))]
            cells += [cell(seed_accuracies(distill, s)) for s in (1, 2, 3)]
            lines.append(f"| {ds} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path("runs/planetoid")
    if not out.is_dir():
        print(f"planetoid_table: {out} is not a folder; run scripts/planetoid_graphs.sh first",
              file=sys.stderr)
        return 2
    print(table(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
