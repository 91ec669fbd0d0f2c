"""``bingnn export``: fold and pack a trained binary DGCNN into a ``.bgnn`` model file."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "pack a trained stage-3 binary DGCNN (rf, bf1, bf2) into a model file for the engine"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help=HELP,
        description="Fold BatchNorm, rescaling and PReLU into exact integer thresholds, pack "
        "the binary weights into 64-bit words and write one .bgnn file (safetensors + JSON) "
        "that `bingnn infer` and bingnn.engine.load run without PyTorch.",
    )
    p.add_argument(
        "checkpoint", help="model file written by training (final.pt, best.pt, checkpoint.pt)"
    )
    p.add_argument("-o", "--output", required=True, help="destination .bgnn file")
    p.add_argument(
        "--class-names",
        metavar="FILE",
        help="text file with one class name per line, in label order (e.g. "
        "ModelNet40's shape_names.txt); default: the dataset's names when known",
    )
    p.set_defaults(func=run)


def _read_names(path: str) -> list[str]:
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"--class-names {path}: is a directory, not a text file of class names")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\0" in text:
        raise ValueError(
            f"--class-names {path}: binary data, not a text file of class names (one name a "
            "line, UTF-8, e.g. shape_names.txt)"
        )
    names = [n.strip() for n in text.splitlines() if n.strip()]
    if not names:
        raise ValueError(f"{path} lists no class name")
    return names


def run(args: argparse.Namespace) -> int:
    from bingnn.engine.format import read_model_file
    from bingnn.export import export_checkpoint

    names = _read_names(args.class_names) if args.class_names else None
    out = export_checkpoint(args.checkpoint, args.output, class_names=names)
    model, arrays = read_model_file(out)
    n_bytes = out.stat().st_size
    print(
        f"wrote {out} ({n_bytes / 1024:.1f} KiB): {model['variant']} k={model['k']} "
        f"widths={model['widths']} classes={model['num_classes']}"
    )
    return 0
