"""Result tables of finished runs: per-stage summaries, means over seeds, and the Markdown
tables of ``docs/results.md`` re-derived from a run's files (``bingnn report RUN_DIR``).

A cascade writes ``summary.csv`` (one row per stage and variant); a command run over several
seeds (``train-node``/``distill-node --seeds N``) writes ``results.csv`` (one row per seed,
stage and variant, then ``mean`` and ``std`` rows). Scores are fractions; tables print
percentages. ``test_*`` columns are the selected (best validation epoch) weights on the test
split, ``val_*`` that epoch's validation scores.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "aggregate_seeds",
    "format_summary",
    "markdown_table",
    "mean_std",
    "metric_names",
    "read_table",
    "render_run",
    "stage_rows",
    "summary_columns",
    "summary_row",
]


def summary_row(stage: int, variant: str, record: dict[str, Any]) -> dict[str, Any]:
    """One stage's row from its completion record (``done.json``)."""
    row: dict[str, Any] = {"stage": stage, "variant": variant,
                           "best_epoch": record.get("best_epoch")}
    for k, v in (record.get("val") or {}).items():
        row[f"val_{k}"] = v
    for k, v in (record.get("test") or {}).items():
        row[f"test_{k}"] = v
    row.update(params=record.get("params"), epochs=record.get("epochs"),
               time_s=record.get("time_s"))
    return row


def metric_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The score names of ``rows`` (``test_oa`` -> ``oa``), in order of appearance."""
    names: dict[str, None] = {}
    for r in rows:
        for k in r:
            if k.startswith("test_"):
                names[k[5:]] = None
    return list(names)


def summary_columns(metrics: Sequence[str], seed: bool = False) -> list[str]:
    return [*(["seed"] if seed else []), "stage", "variant", "best_epoch",
            *(f"val_{m}" for m in metrics), *(f"test_{m}" for m in metrics),
            "params", "epochs", "time_s"]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value; NaN for none)."""
    vals = [float(v) for v in values]
    if not vals:
        return math.nan, math.nan
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def aggregate_seeds(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """``mean`` and ``std`` rows per (stage, variant) over the per-seed ``rows``."""
    keys = list(dict.fromkeys((r["stage"], r["variant"]) for r in rows))
    out: list[dict[str, Any]] = []
    for kind in ("mean", "std"):
        for stage, variant in keys:
            group = [r for r in rows if (r["stage"], r["variant"]) == (stage, variant)]
            agg: dict[str, Any] = {"seed": kind, "stage": stage, "variant": variant}
            for col in (*(f"val_{m}" for m in metrics), *(f"test_{m}" for m in metrics),
                        "best_epoch", "time_s"):
                vals = [r[col] for r in group if r.get(col) not in (None, "")]
                if vals:
                    agg[col] = mean_std(vals)[0 if kind == "mean" else 1]
            agg["n"] = len(group)
            out.append(agg)
    return out


def format_summary(rows: Sequence[dict[str, Any]], metrics: Sequence[str] | None = None) -> str:
    """Plain-text table: stage, variant, validation and test scores (%), best epoch,
    parameters, minutes."""
    metrics = list(metrics or metric_names(rows))
    head = f"{'stage':>5}  {'variant':<14}"
    head += "".join(f"{'val ' + m:>10}" for m in metrics)
    head += "".join(f"{'test ' + m:>10}" for m in metrics)
    head += f"{'best ep':>8}{'params':>10}{'min':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        line = f"{r['stage']:>5}  {r['variant']:<14}"
        line += "".join(f"{_pct(r.get(f'val_{m}')):>10}" for m in metrics)
        line += "".join(f"{_pct(r.get(f'test_{m}')):>10}" for m in metrics)
        line += f"{r.get('best_epoch', ''):>8}{_int(r.get('params')):>10}"
        line += f"{_minutes(r.get('time_s')):>7}"
        lines.append(line)
    return "\n".join(lines)


def _pct(v: Any) -> str:
    return "" if v in (None, "") else f"{100 * float(v):.2f}"


def _int(v: Any) -> str:
    return "" if v in (None, "") else f"{int(v):,}"


def _minutes(v: Any) -> str:
    return "" if v in (None, "") else f"{float(v) / 60:.1f}"


def read_table(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``summary.csv``/``results.csv`` with numbers parsed."""
    from bingnn.train.metrics_log import read_metrics

    return read_metrics(path)


def _cell(rows: list[dict[str, Any]], metric: str, seeds: bool) -> str:
    if not rows:
        return ""
    if not seeds:
        r = rows[0]
        test, val = r.get(f"test_{metric}"), r.get(f"val_{metric}")
        return f"{100 * float(test):.1f} ({100 * float(val):.1f})" if val not in (None, "") \
            else f"{100 * float(test):.1f}"
    mean = [r for r in rows if r.get("seed") == "mean"]
    std = [r for r in rows if r.get("seed") == "std"]
    n = len([r for r in rows if r.get("seed") not in ("mean", "std")])
    if not mean:
        return ""
    m, s = float(mean[0][f"test_{metric}"]), float(std[0][f"test_{metric}"])
    return f"{100 * m:.2f} ± {100 * s:.2f} (n={n})"


def markdown_table(rows: Sequence[dict[str, Any]], metric: str | None = None) -> str:
    """The docs table of a run: one row per stage, one column per variant; a cell is the test
    score (%) of the stage's selected weights with, for a single run, its validation score in
    brackets, or, over seeds, ``mean ± std (n=seeds)``. Stage 0 (the float teacher) is shown in
    every column it teaches."""
    rows = list(rows)
    metric = metric or metric_names(rows)[0]
    seeds = any("seed" in r for r in rows)
    students = list(dict.fromkeys(r["variant"] for r in rows if int(r["stage"]) > 0))
    teachers = list(dict.fromkeys(r["variant"] for r in rows if int(r["stage"]) == 0))
    if not students:
        students = teachers
    lines = ["| stage | " + " | ".join(students) + " |",
             "|---|" + "---|" * len(students)]
    for stage in sorted({int(r["stage"]) for r in rows}):
        cells = []
        for v in students:
            if stage == 0:
                from bingnn.distill.recipe import NODE_VARIANTS

                t = NODE_VARIANTS.get(v, "float")
                name = t if t in teachers else (teachers[0] if len(teachers) == 1 else None)
                group = [r for r in rows if int(r["stage"]) == 0 and r["variant"] == name]
            else:
                group = [r for r in rows if int(r["stage"]) == stage and r["variant"] == v]
            cells.append(_cell(group, metric, seeds))
        label = "0 (float teacher)" if stage == 0 else str(stage)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    what = "mean ± std over seeds" if seeds else "validation in brackets"
    lines.append("")
    lines.append(f"Test {metric} (%) of each stage's selected weights ({what}).")
    return "\n".join(lines)


def render_run(run_dir: str | os.PathLike, metric: str | None = None) -> str:
    """The Markdown table of a run folder: its ``results.csv`` over seeds, else its
    ``summary.csv``, else (a cascade still running or interrupted) the ``done.json`` of its
    finished stages, followed by a line naming the stages that have not finished."""
    d = Path(run_dir)
    for name in ("results.csv", "summary.csv"):
        if (d / name).is_file():
            rows = read_table(d / name)
            if not rows:
                raise ValueError(f"{d / name} holds no rows")
            return markdown_table(rows, _check_metric(rows, metric, d / name))
    rows, unfinished = stage_rows(d)
    if not rows:
        raise FileNotFoundError(
            f"{d} has no summary.csv or results.csv and no finished stage (<variant>/stage<i>/"
            "done.json); is it the --out folder of a run?")
    table = markdown_table(rows, _check_metric(rows, metric, d))
    note = ("; not finished: " + ", ".join(unfinished)) if unfinished else ""
    return (f"{table}\nThe run has no summary yet: finished stages only (their done.json)"
            f"{note}.")


def _check_metric(rows: list[dict[str, Any]], metric: str | None, where: Path) -> str | None:
    names = metric_names(rows)
    if metric is not None and metric not in names:
        raise ValueError(f"{where} has no score {metric!r}; it has {', '.join(names)}")
    return metric


def stage_rows(run_dir: str | os.PathLike) -> tuple[list[dict[str, Any]], list[str]]:
    """The summary rows of a cascade folder's finished stages (``<variant>/stage<i>/done.json``)
    and the names (``<variant>/stage<i>``) of its started, unfinished ones."""
    import json

    rows: list[dict[str, Any]] = []
    unfinished: list[str] = []
    folders = [f for f in Path(run_dir).glob("*/stage*")
               if f.is_dir() and f.name[5:].isdigit()]
    for f in sorted(folders, key=lambda f: (int(f.name[5:]), f.parent.name)):
        done = f / "done.json"
        if not done.is_file():
            unfinished.append(f"{f.parent.name}/{f.name}")
            continue
        try:
            record = json.loads(done.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{done} is not a readable completion record ({e})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{done} is not a readable completion record (not a JSON object)")
        rows.append(summary_row(int(f.name[5:]), f.parent.name, record))
    return rows, unfinished


def write_csv(path: str | os.PathLike, rows: Sequence[dict[str, Any]],
              columns: Sequence[str]) -> None:
    """``rows`` as CSV (atomic); floats at full precision."""
    import io

    from bingnn.utils.atomic import atomic_write_text

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    atomic_write_text(path, buf.getvalue())
