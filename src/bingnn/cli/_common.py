"""Arguments shared by several subcommands."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


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
        choices=["synthetic", "modelnet40", "modelnet10"],
        default="synthetic" if defaults else None,
        help="synthetic shapes (no download), ModelNet40 or ModelNet10"
        + (" (default: synthetic)" if defaults else " (default: the one it was trained on)"),
    )
    g.add_argument(
        "--data-dir", default=None, help="ModelNet40/ModelNet10 folder (default: data cache)"
    )
    g.add_argument(
        "--download",
        action="store_true",
        help="download ModelNet40/ModelNet10 if missing (a mirror or a local zip: set "
        "BINGNN_MODELNET40_URL / BINGNN_MODELNET10_URL, e.g. file:///path/to/ModelNet10.zip)",
    )
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


def check_output_folder(path: str | os.PathLike, option: str = "--out") -> None:
    """Refuse an output folder that cannot be one: an existing file, or a path through a file.

    Raises:
        NotADirectoryError: with a one-line message naming ``option``.
    """
    p = Path(path)
    for part in (p, *p.parents):
        if part.exists() and not part.is_dir():
            where = "" if part == p else f" (its parent {part} is a file)"
            raise NotADirectoryError(
                f"{option} {p} is not a folder{where}; give the folder to write into "
                "(a new or an existing one)"
            )


def check_input_file(path: str | os.PathLike, what: str, option: str) -> None:
    """Refuse a missing input file, or a folder where a file is expected.

    Raises:
        FileNotFoundError / IsADirectoryError: with a one-line message naming ``option``.
    """
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{option} {p} is a folder, expected {what} (a file)")
    if not p.exists():
        raise FileNotFoundError(f"{option} {p}: {what} not found")
