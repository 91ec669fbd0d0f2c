"""``bingnn infer``: classify point-cloud files with a ``.bgnn`` model, without PyTorch."""

from __future__ import annotations

import argparse

from bingnn.cli._common import positive_int

HELP = "classify point clouds (.npy, .h5, .ply, .off) with a .bgnn model (no PyTorch)"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "infer",
        help=HELP,
        description="Run a model file written by `bingnn export` on every point cloud stored "
        "in the given files and print, per cloud, the predicted label and its probability. "
        "Runs on numpy and the native kernels only.",
    )
    p.add_argument("model", help="model file (.bgnn)")
    p.add_argument("files", nargs="+", metavar="FILE", help=".npy, .h5/.hdf5, .ply or .off")
    p.add_argument(
        "--top",
        type=positive_int,
        default=1,
        help="also list the K most probable classes (default: 1)",
    )
    p.add_argument(
        "--threads", type=positive_int, default=None, help="native threads (default: all cores)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per cloud")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    import bingnn.engine
    from bingnn.data.point_files import read_point_clouds

    model = bingnn.engine.load(args.model, num_threads=args.threads)
    top = min(args.top, model.num_classes)
    for path in args.files:
        clouds = read_point_clouds(path)
        for i, cloud in enumerate(clouds):
            name = path if len(clouds) == 1 else f"{path}[{i}]"
            proba = model.predict_proba(cloud)
            order = np.argsort(-proba, kind="stable")[:top]
            best = int(order[0])
            if args.json:
                print(
                    json.dumps(
                        {
                            "file": name,
                            "label": model.class_names[best],
                            "index": best,
                            "probability": float(proba[best]),
                            "top": [
                                {"label": model.class_names[int(c)], "probability": float(proba[c])}
                                for c in order
                            ],
                        }
                    )
                )
            else:
                extra = ""
                if top > 1:
                    extra = (
                        "  ("
                        + ", ".join(f"{model.class_names[int(c)]} {proba[c]:.3f}" for c in order)
                        + ")"
                    )
                print(f"{name}\t{model.class_names[best]}\t{proba[best]:.3f}{extra}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m bingnn.cli.infer_cmd MODEL FILE...``: the inference command alone, for
    deployments with numpy and the native extension only (no PyTorch, no training side)."""
    import sys

    from bingnn.cli.main import _expected_errors, _one_line, _Parser

    parser = _Parser(prog="bingnn-infer", description=HELP)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    register(sub)
    try:
        args = parser.parse_args(["infer", *(sys.argv[1:] if argv is None else argv)])
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    try:
        return run(args)
    except _expected_errors() as e:
        print(f"bingnn: error: {_one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
