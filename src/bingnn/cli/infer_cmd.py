"""``bingnn infer``: classify point clouds and meshes with a ``.bgnn`` model, without PyTorch.

Each input file is read (meshes sampled on their surface), each cloud brought to the model's
point count ``N`` (farthest-point sampling of larger clouds, repetition of smaller ones; fewer
than ``k`` points is an error) and normalised as the training clouds were (centred, farthest
point at radius 1; ``--no-normalize`` turns that off), then classified. A file that cannot be
read is reported on one line and skipped; the others are still classified, and the exit status
is 1.
"""

from __future__ import annotations

import argparse
import sys

from bingnn.cli._common import positive_int

HELP = (
    "classify point clouds and meshes (.off .obj .ply .pcd .xyz .txt .npy .h5) with a .bgnn "
    "model or a pretrained name (no PyTorch)"
)
EXIT_SOME_FAILED = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "infer",
        help=HELP,
        description="Run a model file written by `bingnn export` (or a pretrained model, e.g. "
        "--model modelnet10-bf2) on every point cloud or mesh in the given files and print, "
        "per cloud, the predicted label and its probability. Clouds of any size are resampled "
        "to the model's point count (farthest-point sampling, or repetition), meshes are "
        "sampled on their surface, and every cloud is centred and scaled into the unit sphere "
        "like the training data. Runs on numpy and the native kernels only.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="FILE",
        help="[MODEL] FILE...: without --model, the first argument is the model (.bgnn or a "
        "pretrained name); files: .off .obj .ply .pcd .xyz .txt .csv .pts .npy .h5",
    )
    p.add_argument(
        "--model",
        default=None,
        help="model file (.bgnn) or pretrained name (modelnet10-bf2, modelnet10-rf)",
    )
    p.add_argument(
        "--top",
        type=positive_int,
        default=1,
        help="also list the K most probable classes (default: 1)",
    )
    p.add_argument(
        "--points",
        type=positive_int,
        default=None,
        help="points per cloud fed to the model (default: the model's training count when "
        "its file or card records it, else 1024)",
    )
    p.add_argument(
        "--no-normalize",
        dest="normalize",
        action="store_false",
        help="feed coordinates as they are (default: centre each cloud and scale it into the "
        "unit sphere, as the training data)",
    )
    p.add_argument(
        "--mesh-oversample",
        type=positive_int,
        default=4,
        help="meshes: draw K x points on the surface, keep the points by farthest-point "
        "sampling (evenly spread; 1 = plain area-weighted sample; default: 4)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of mesh sampling (default: 0)")
    p.add_argument(
        "--batch-size", type=positive_int, default=32, help="clouds per forward pass (default: 32)"
    )
    p.add_argument(
        "--threads", type=positive_int, default=None, help="native threads (default: all cores)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per cloud")
    p.set_defaults(func=run)


def _split_inputs(args: argparse.Namespace) -> tuple[str, list[str]]:
    if args.model is not None:
        return args.model, list(args.inputs)
    if len(args.inputs) < 2:
        raise ValueError(
            "give a model and at least one file: bingnn infer MODEL FILE... (or --model MODEL)"
        )
    return args.inputs[0], list(args.inputs[1:])


def _print(args, model, name: str, proba, top: int) -> None:
    import json

    import numpy as np

    order = np.argsort(-proba, kind="stable")[:top]
    best = int(order[0])
    if args.json:
        print(json.dumps({
            "file": name,
            "label": model.class_names[best],
            "index": best,
            "probability": float(proba[best]),
            "top": [
                {"label": model.class_names[int(c)], "probability": float(proba[c])}
                for c in order
            ],
        }))
        return
    extra = ""
    if top > 1:
        extra = "  (" + ", ".join(
            f"{model.class_names[int(c)]} {proba[c]:.3f}" for c in order) + ")"
    print(f"{name}\t{model.class_names[best]}\t{proba[best]:.3f}{extra}")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    import bingnn.engine
    from bingnn.data.point_files import read_point_clouds
    from bingnn.data.resample import DEFAULT_NUM_POINTS, prepare_cloud

    model_ref, files = _split_inputs(args)
    model = bingnn.engine.load(model_ref, num_threads=args.threads)
    n = args.points or model.input_points or DEFAULT_NUM_POINTS
    top = min(args.top, model.num_classes)
    failed = 0
    names: list[str] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        if batch:
            proba = model.predict_proba(np.stack(batch))
            for nm, pr in zip(names, proba, strict=True):
                _print(args, model, nm, pr, top)
            names.clear()
            batch.clear()

    for path in files:
        try:
            clouds = read_point_clouds(
                path, mesh_points=n, oversample=args.mesh_oversample, seed=args.seed
            )
            ready = []
            for i, cloud in enumerate(clouds):
                nm = path if len(clouds) == 1 else f"{path}[{i}]"
                ready.append((nm, prepare_cloud(
                    cloud, n, min_points=model.k, normalize=args.normalize, name=nm)))
        except (ValueError, OSError) as e:
            # One bad file must not cost the others their answers: say why, go on.
            failed += 1
            flush()  # keep the output in input order
            print(f"bingnn: error: {_one_line(e)}", file=sys.stderr)
            continue
        for nm, x in ready:
            names.append(nm)
            batch.append(x)
            if len(batch) >= args.batch_size:
                flush()
    flush()
    if failed:
        print(
            f"bingnn: {failed} of {len(files)} file(s) could not be classified (see above)",
            file=sys.stderr,
        )
        return EXIT_SOME_FAILED
    return 0


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, FileNotFoundError) and e.filename and str(e.filename) not in text:
        text = f"{text}: {e.filename}"
    return text


def main(argv: list[str] | None = None) -> int:
    """``python -m bingnn.cli.infer_cmd [MODEL] FILE...``: the inference command alone, for
    deployments with numpy and the native extension only (no PyTorch, no training side)."""
    from bingnn.cli.main import _expected_errors, _Parser

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
