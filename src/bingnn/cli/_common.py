"""Arguments shared by several subcommands."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return v


def int_list(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 64,64,128,256, got {text!r}"
        ) from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA if available, else CPU), cpu, cuda or cuda:N (default: auto)",
    )


def add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars or epoch lines")


def add_data(p: argparse.ArgumentParser, defaults: bool = True, train: bool = False) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        choices=["synthetic", "modelnet40"],
        default="synthetic" if defaults else None,
        help="synthetic shapes (no download) or ModelNet40"
        + (" (default: synthetic)" if defaults else " (default: the one it was trained on)"),
    )
    g.add_argument("--data-dir", default=None, help="ModelNet40 folder (default: data cache)")
    g.add_argument("--download", action="store_true", help="download ModelNet40 if missing")
    g.add_argument(
        "--points",
        type=positive_int,
        default=1024 if defaults else None,
        help="points per cloud" + (" (default: 1024)" if defaults else ""),
    )
    if train:
        g.add_argument(
            "--train-samples", type=positive_int, default=None,
            help="use N clouds of the training set: a seeded, stratified subset, of which the "
            "validation share is held out",
        )
    g.add_argument("--test-samples", type=positive_int, default=None,
                   help="use N clouds of the test set (a seeded, stratified subset)")
