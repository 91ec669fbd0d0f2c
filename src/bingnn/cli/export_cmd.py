"""``bingnn export``: fold and pack a trained binary GNN into a ``.bgnn`` model file."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bingnn.cli._common import positive_int

HELP = ("pack a trained stage-3 binary model (BinDGCNN rf/bf1/bf2, BinSAGE, BinGCN) into a "
        "model file for the engine")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help=HELP,
        description="Fold BatchNorm, rescaling and PReLU into exact thresholds, pack the "
        "binary weights into 64-bit words and write one .bgnn file (safetensors + a JSON list "
        "of layers) that `bingnn infer` and bingnn.engine.load run without PyTorch.",
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
    p.add_argument(
        "--num-points", type=positive_int, default=None,
        help="point-cloud models: points per cloud the model was trained on (default: the "
        "count the checkpoint records)",
    )
    p.add_argument(
        "--force", action="store_true",
        help="overwrite an existing output file (never the input checkpoint)",
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


def check_output(checkpoint: str, output: str, force: bool) -> Path:
    """Refuse outputs that would destroy something: the input itself (even with ``force``), a
    directory, or any existing file unless ``force``. The write itself re-checks atomically
    (:func:`bingnn.export.export` with ``overwrite=False``)."""
    out, src = Path(output), Path(checkpoint)
    if out.is_dir():
        raise ValueError(f"{out} is a directory; give the model file's name, e.g. "
                         f"{out / 'model.bgnn'}")
    if out.exists() and src.exists() and os.path.samefile(src, out):
        raise ValueError(f"the output {out} is the input checkpoint; writing it would "
                         "destroy the checkpoint: choose another name, e.g. "
                         f"{out.with_suffix('.bgnn')}")
    if not force and os.path.lexists(out):
        raise ValueError(f"{out} exists; choose another name or pass --force to overwrite it")
    return out


def run(args: argparse.Namespace) -> int:
    from bingnn.engine.format import read_model_file
    from bingnn.export import export_checkpoint

    out = check_output(args.checkpoint, args.output, args.force)
    names = _read_names(args.class_names) if args.class_names else None
    out = export_checkpoint(args.checkpoint, out, class_names=names, num_points=args.num_points,
                            overwrite=args.force)
    model, _ = read_model_file(out)
    n_bytes = out.stat().st_size
    layers = model["layers"]
    if model["task"] == "point_cloud_classification":
        k = next(layer["k"] for layer in layers if "k" in layer)
        points = model["input"].get("num_points")
        what = (f"{model.get('variant')} k={k} points={points if points else 'unknown'} "
                f"classes={model['num_classes']}")
    else:
        what = (f"{model.get('arch')} features={model['input']['channels']} "
                f"classes={model['num_classes']}")
    print(f"wrote {out} ({n_bytes / 1024:.1f} KiB): {what}, {len(layers)} layers")
    return 0
