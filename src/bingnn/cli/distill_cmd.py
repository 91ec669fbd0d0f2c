"""``bingnn distill``: cascaded distillation (float teacher -> 3 binary stages) from a recipe,
for point clouds (``quick``, ``paper``) or graphs (``planetoid``, ``ogbn-*``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bingnn.cli._common import positive_float, positive_int
from bingnn.cli._training import add_runtime, runtime, say

HELP = "cascaded distillation of binary models from a recipe (resumable)"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "distill",
        help=HELP,
        description=(
            "Train the float teacher (stage 0), then distil it into binary students in three "
            "stages for each variant of the recipe. Each stage keeps the weights of its best "
            "validation epoch (best.pt), which are reported on the test set and teach the next "
            "stage. Writes OUT/<variant>/stage<i>/ (config.json, metrics.csv, checkpoint.pt, "
            "best.pt, final.pt, done.json), summary.csv/json/txt and accuracy.png. Re-running "
            "the same command resumes where it stopped."
        ),
    )
    p.add_argument(
        "--recipe",
        default="quick",
        help="built-in recipe: 'quick' (synthetic point clouds, CPU, about 20 minutes on 2 "
        "cores with --jobs 2), 'modelnet10' (real ModelNet10 shapes at 512 points, sized for "
        "a CPU), 'paper' (ModelNet40, the paper's hyper-parameters), 'planetoid', 'facebook', "
        "'actor', 'ogbn-arxiv', 'ogbn-products', 'ogbn-proteins' (graphs); or a TOML file "
        "overriding one (default: quick)",
    )
    p.add_argument("--out", default=None, help="output folder (default: runs/<recipe name>)")
    p.add_argument(
        "--variants",
        nargs="+",
        default=None,
        metavar="V",
        help="variants to run instead of the recipe's, e.g. bf2-hamming bf1-l2 rf (graphs: "
        "bingcn binsage)",
    )
    p.add_argument(
        "--epochs-scale",
        type=positive_float,
        default=None,
        metavar="F",
        help="multiply every stage's epochs by F (at least 1 epoch), e.g. 0.01 for a smoke run",
    )
    p.add_argument("--seed", type=int, default=None, help="the run's seed (default: the recipe's)")
    p.add_argument(
        "--data-dir", default=None, help="data folder (overrides the recipe's data.root)"
    )
    p.add_argument(
        "--download", action="store_true", help="download the data set first if it is missing"
    )
    p.add_argument("--print-recipe", action="store_true",
                   help="print the resolved, validated recipe and exit")
    p.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                   help="after the teacher, train the students of up to N variants at once, "
                   "each in its own CPU process with threads/N torch threads; on a multi-core "
                   "CPU several one-thread trainings finish sooner than one multi-threaded "
                   "training, with the same results (default: 1)")
    p.add_argument("--last-stage", type=int, choices=(0, 1, 2, 3), default=3,
                   help="stop after this stage (0: the teacher only); the same command with a "
                   "later stage continues the run (default: 3, fully binary)")
    add_runtime(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from bingnn.distill.cascade import run_cascade
    from bingnn.distill.recipe import apply_overrides, load_recipe

    data = {}
    if args.data_dir:
        data["root"] = str(Path(args.data_dir).expanduser())
    if args.download:
        data["download"] = True
    recipe = apply_overrides(load_recipe(args.recipe), args.variants, args.epochs_scale,
                             data=data, seed=args.seed)
    if args.print_recipe:
        print(json.dumps(recipe, indent=2))
        return 0
    ctx = runtime(args)
    out = Path(args.out) if args.out else Path("runs") / str(recipe.get("name", "distill"))
    run_cascade(recipe, out, ctx, progress=not args.no_progress, bf16=args.bf16,
                echo=lambda text: say(ctx, args, text, always=True), jobs=args.jobs,
                last_stage=args.last_stage)
    return 0
