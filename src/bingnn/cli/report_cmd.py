"""``bingnn report``: the results table of a run, as printed in ``docs/results.md``, re-derived
from the run's ``summary.csv`` (a cascade) or ``results.csv`` (over seeds), or from the finished
stages of a cascade that has not written its summary yet."""

from __future__ import annotations

import argparse

HELP = "print the Markdown results table of a run folder (docs/results.md)"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help=HELP,
        description="Render the table of a finished 'distill', 'train-node' or 'distill-node' "
        "run from its summary.csv or results.csv: one row per stage, one column per variant; "
        "a cell is the test score (%) of the stage's selected weights (best validation "
        "epoch), with the validation score in brackets, or mean +- std over seeds. The tables "
        "of docs/results.md are this command's output. A cascade still running (or "
        "interrupted) has no summary yet: its finished stages are shown, from their "
        "done.json, and the unfinished ones named.",
    )
    p.add_argument("run_dir", help="the --out folder of a run")
    p.add_argument("--metric", default=None,
                   help="score to show: oa or macc (point clouds), acc or rocauc (graphs); "
                   "default: the first")
    p.add_argument("--text", action="store_true",
                   help="the plain per-stage summary (summary.txt) instead of Markdown")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bingnn.train.report import format_summary, read_table, render_run

    if args.text:
        path = Path(args.run_dir) / "summary.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; is {args.run_dir} a finished cascade?")
        print(format_summary(read_table(path)))
        return 0
    print(render_run(args.run_dir, args.metric))
    return 0
