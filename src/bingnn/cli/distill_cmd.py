"""``bingnn distill``: cascaded distillation (float teacher -> 3 binary stages) from a recipe."""

from __future__ import annotations

import argparse
from pathlib import Path

from bingnn.cli._common import add_device, add_progress, positive_float

HELP = "cascaded distillation of binary DGCNNs from a recipe (resumable)"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "distill",
        help=HELP,
        description=(
            "Train the float DGCNN teacher (stage 0), then distil it into binary students in "
            "three stages for each variant of the recipe. Writes OUT/<variant>/stage<i>/ "
            "(config.json, metrics.csv, checkpoint.pt, final.pt), summary.csv/json and "
            "accuracy.png. Re-running the same command resumes where it stopped."
        ),
    )
    p.add_argument(
        "--recipe",
        default="quick",
        help="built-in recipe 'quick' (synthetic, CPU, minutes) or 'paper' (ModelNet40, the "
        "paper's hyper-parameters), or a TOML file overriding one (default: quick)",
    )
    p.add_argument("--out", default=None, help="output folder (default: runs/<recipe name>)")
    p.add_argument(
        "--variants",
        nargs="+",
        default=None,
        metavar="V",
        help="variants to run instead of the recipe's, e.g. bf2-hamming bf1-l2 rf",
    )
    p.add_argument(
        "--epochs-scale",
        type=positive_float,
        default=None,
        metavar="F",
        help="multiply every stage's epochs by F (at least 1 epoch), e.g. 0.01 for a smoke run",
    )
    p.add_argument(
        "--data-dir", default=None, help="ModelNet40 folder (overrides the recipe's data.root)"
    )
    p.add_argument(
        "--download", action="store_true", help="download ModelNet40 first if it is missing"
    )
    p.add_argument("--print-recipe", action="store_true", help="print the resolved recipe and exit")
    add_device(p)
    add_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from bingnn.distill.cascade import run_cascade
    from bingnn.distill.recipe import apply_overrides, load_recipe

    recipe = apply_overrides(load_recipe(args.recipe), args.variants, args.epochs_scale)
    if args.data_dir:
        recipe["data"]["root"] = str(Path(args.data_dir).expanduser())
    if args.download:
        recipe["data"]["download"] = True
    if args.print_recipe:
        print(json.dumps(recipe, indent=2))
        return 0
    out = Path(args.out) if args.out else Path("runs") / str(recipe.get("name", "distill"))
    run_cascade(recipe, out, device=args.device, progress=not args.no_progress, echo=print)
    return 0
