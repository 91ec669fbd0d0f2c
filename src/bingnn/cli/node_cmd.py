"""``bingnn train-node`` and ``bingnn distill-node``: node classification on Planetoid,
Facebook Page-Page, Actor and OGB.

Both take the data set's recipe (``src/bingnn/distill/recipes/planetoid.toml``,
``facebook.toml``, ``actor.toml``, ``ogbn-*.toml``, or ``--recipe FILE``), apply the
command-line options over it, and run ``--seeds`` independent runs; the score reported is the
test score of the weights of the best validation epoch, as mean and standard deviation over
seeds (OGB's leaderboard protocol). Run seed ``s`` seeds the model and, where a data set has no
single fixed split, picks the split: Facebook's stratified split with split seed ``s``, Actor's
standard split ``s`` (``bingnn.graphs.datasets``). Layout of ``--out``::

    seed<k>/                     train-node: one run folder (config.json, metrics.csv,
                                 checkpoint.pt, best.pt, final.pt, done.json)
    seed<k>/<model>/stage<s>/    distill-node: the cascade of seed k (+ its summary.csv)
    results.csv                  one row per seed (and stage), then mean and std rows
    summary.json, accuracy.png   mean test score per stage

Re-running the same command resumes: finished seeds and stages are read back, an interrupted
one continues after its last epoch. Data-parallel under torchrun.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bingnn.cli._common import positive_float, positive_int
from bingnn.cli._training import (
    add_runtime,
    add_schedule,
    fraction,
    non_negative_float,
    runtime,
    say,
    schedule_from_args,
    unit_interval,
)

__all__ = ["build_recipe", "register", "run_distill", "run_train"]

MODELS = ("sage", "binsage", "gcn", "bingcn")


def _fanouts(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected fan-outs like 15,10,5, got {text!r}") from None
    if not vals or any(v == 0 or v < -1 for v in vals):
        raise argparse.ArgumentTypeError(f"fan-outs must be positive or -1, got {text!r}")
    return vals


def _add_common(p: argparse.ArgumentParser, distill: bool) -> None:
    from bingnn.graphs.names import NODE_DATASETS

    d = p.add_argument_group("data")
    d.add_argument("--dataset", required=True, choices=NODE_DATASETS,
                   help="Planetoid (public split), Facebook Page-Page (stratified split of "
                   "the run seed), Actor (standard split of the run seed, 0-9) or OGB node "
                   "property prediction")
    d.add_argument("--recipe", default=None,
                   help="recipe TOML file (default: the data set's built-in recipe, "
                   "'planetoid', 'facebook', 'actor' or 'ogbn-*'); the options below "
                   "override it")
    d.add_argument("--root", default=None,
                   help="data folder (default: $BINGNN_DATA or ~/.cache/bingnn)")
    d.add_argument("--raw-dir", default=None,
                   help="folder with the original release files, copied into --root "
                   "(offline): Planetoid's ind.<name>.*, Facebook's *_edges.csv, "
                   "*_target.csv, *_features.json, Actor's out1_*.txt and split files")
    d.add_argument("--download", action="store_true", help="download the dataset if missing")
    d.add_argument("--normalize-features", action=argparse.BooleanOptionalAction, default=None,
                   help="row-normalise node features (default: the recipe's; on for "
                   "Planetoid, off for Facebook, Actor and OGB)")
    m = p.add_argument_group("model (defaults: the recipe's)")
    if distill:
        m.add_argument("--model", required=True, choices=("binsage", "bingcn"),
                       help="the binary student family; the teacher is its float version")
    else:
        m.add_argument("--model", required=True, choices=MODELS,
                       help="float (sage, gcn) or binary (binsage, bingcn) model")
        m.add_argument("--stage", type=int, choices=(0, 1, 2, 3), default=None,
                       help="quantization stage of binsage/bingcn (default 3, fully binary)")
    m.add_argument("--layers", type=positive_int, help="number of layers")
    m.add_argument("--hidden", type=positive_int, help="hidden width")
    m.add_argument("--dropout", type=fraction, help="dropout between layers")
    m.add_argument("--input-dropout", type=fraction, help="dropout on the input features")
    m.add_argument("--centering", choices=("batchnorm", "mean", "median", "none"),
                   help="centering before each sign of the hidden layers")
    m.add_argument("--real-last", action="store_true",
                   help="keep real weights in the last (classifier) layer")
    m.add_argument("--no-node-scale", action="store_true", help="bingcn: no per-node scale")
    m.add_argument("--sign-messages", action=argparse.BooleanOptionalAction, default=None,
                   help="binsage: hidden layers aggregate their neighbours' signs by majority "
                   "vote (one bit per channel and edge in the engine; default: the recipe's)")
    t = p.add_argument_group("training (defaults: the recipe's; an option sets every stage)")
    t.add_argument("--epochs", type=positive_int, help="epochs of every stage")
    t.add_argument("--lr", type=positive_float, help="learning rate (Adam)")
    t.add_argument("--weight-decay", type=non_negative_float, help="weight decay")
    add_schedule(t, None)
    t.add_argument("--mode", choices=("full", "minibatch"), help="full batch or sampled")
    t.add_argument("--fanouts", type=_fanouts, help="neighbours per hop, e.g. 15,10,5")
    t.add_argument("--batch-size", type=positive_int,
                   help="seed nodes per mini-batch, all processes together")
    t.add_argument("--eval-mode", choices=("full", "layerwise"),
                   help="evaluate by a full forward pass or layer by layer (large graphs)")
    t.add_argument("--eval-batch-size", type=positive_int,
                   help="target nodes per step of layer-wise evaluation")
    t.add_argument("--seeds", type=positive_int, default=1, help="independent runs (default 1)")
    t.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    o = p.add_argument_group("output")
    o.add_argument("--out", default=None, help="output folder (default runs/<cmd>/<data>-<model>)")
    add_runtime(p)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-node", help="train a (binary) GraphSAGE/GCN node classifier",
        description="Train float or binary GraphSAGE/GCN on Planetoid, Facebook Page-Page, "
        "Actor or OGB node property prediction, over several seeds (mean +- std). The "
        "weights of the best validation epoch are kept (best.pt) and scored on the test "
        "nodes.",
    )
    _add_common(p, distill=False)
    p.set_defaults(func=run_train)
    q = subparsers.add_parser(
        "distill-node", help="three-stage cascaded distillation of a binary node classifier",
        description="Float teacher -> stage 1 (tanh) -> stage 2 (binary activations) -> "
        "stage 3 (fully binary), each student initialised from its teacher (the best "
        "validation epoch of the stage before), logit KD (and optional LSP on the graph's "
        "edges).",
    )
    _add_common(q, distill=True)
    q.add_argument("--kd-alpha", type=unit_interval, default=None,
                   help="KD weight a (default: the recipe's, 0.9 on Planetoid)")
    q.add_argument("--kd-nodes", choices=("all", "train"), default=None,
                   help="nodes KD is taken over: every node of the graph (all; needs no "
                   "labels) or the labelled training nodes only (train, the paper's recipe); "
                   "default: the recipe's")
    q.add_argument("--kd-temperature", type=positive_float, default=None,
                   help="T (default: the recipe's, 2)")
    q.add_argument("--lsp-weight", type=non_negative_float, default=None,
                   help="LSP weight lambda on the graph's edges (default: the recipe's, 0: off)")
    q.add_argument("--last-stage", type=int, choices=(1, 2, 3), default=3,
                   help="stop after this stage (default: 3, fully binary)")
    q.add_argument("--teacher", default=None,
                   help="best.pt of a trained float model (train-node --model sage|gcn): "
                   "stage 0 takes it instead of training one")
    q.set_defaults(func=run_distill)


# --------------------------------------------------------------------------------------------

#: command-line option -> (recipe section, key)
_MODEL_OPTIONS = {"layers": "num_layers", "hidden": "hidden_channels", "dropout": "dropout",
                  "input_dropout": "input_dropout", "centering": "centering"}
_TRAIN_OPTIONS = ("epochs", "lr", "weight_decay", "mode", "fanouts", "batch_size", "eval_mode",
                  "eval_batch_size")
_LOSS_OPTIONS = {"kd_alpha": "alpha", "kd_nodes": "kd_nodes", "kd_temperature": "temperature",
                 "lsp_weight": "lsp_weight"}


def build_recipe(args: argparse.Namespace, variant: str) -> dict[str, Any]:
    """The data set's recipe with the command-line options applied (validated)."""
    from bingnn.distill.recipe import RecipeError, apply_overrides, load_recipe, node_recipe_for

    recipe = load_recipe(args.recipe or node_recipe_for(args.dataset))
    if recipe.get("task") != "node":
        raise RecipeError(f"{recipe['source']} is a {recipe.get('task')} recipe; the node "
                          "commands need a node recipe (task = \"node\")")
    data: dict[str, Any] = {"dataset": args.dataset}
    for key in ("root", "raw_dir", "normalize_features"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    if args.download:
        data["download"] = True
    model = {k: getattr(args, opt) for opt, k in _MODEL_OPTIONS.items()
             if getattr(args, opt) is not None}
    if args.real_last:
        model["binary_last"] = False
    if args.no_node_scale:
        model["node_scale"] = False
    if args.sign_messages is not None:
        model["sign_messages"] = args.sign_messages
    train = {k: getattr(args, k) for k in _TRAIN_OPTIONS if getattr(args, k) is not None}
    schedule = schedule_from_args(args)
    if schedule is not None:
        train["schedule"] = schedule
    loss = {k: getattr(args, opt) for opt, k in _LOSS_OPTIONS.items()
            if getattr(args, opt, None) is not None}
    out = apply_overrides(recipe, [variant], data=data, model=model, train=train, loss=loss)
    if getattr(args, "teacher", None):
        out.setdefault("stage0", {})["teacher"] = str(args.teacher)
    return out


def _out(args: argparse.Namespace, cmd: str) -> Path:
    return Path(args.out or f"runs/{cmd}/{args.dataset}-{args.model}")


def _print_table(ctx, args, agg: list[dict[str, Any]]) -> None:
    from bingnn.train.report import metric_names

    metric = metric_names(agg)[0]
    mean = {(r["stage"], r["variant"]): r for r in agg if r["seed"] == "mean"}
    std = {(r["stage"], r["variant"]): r for r in agg if r["seed"] == "std"}
    lines = [f"{'stage':>5}  {'model':<10} {'val ' + metric + ' (%)':>18} "
             f"{'test ' + metric + ' (%)':>18}  seeds"]
    for key, m in mean.items():
        s = std[key]
        val = f"{100 * m[f'val_{metric}']:.2f} +- {100 * s[f'val_{metric}']:.2f}"
        test = f"{100 * m[f'test_{metric}']:.2f} +- {100 * s[f'test_{metric}']:.2f}"
        lines.append(f"{key[0]:>5}  {key[1]:<10} {val:>18} {test:>18}  {m['n']}")
    say(ctx, args, "\n".join(lines), always=True)


def _check_seeds(args: argparse.Namespace) -> None:
    """Actor has 10 standard splits and run seed ``s`` uses split ``s``: a seed without a split
    fails before any training."""
    from bingnn.graphs.actor import NUM_SPLITS

    if args.dataset.lower() == "actor" and (args.seed < 0 or args.seed + args.seeds > NUM_SPLITS):
        raise ValueError(f"Actor has {NUM_SPLITS} standard splits and run seed s uses split s; "
                         f"seeds {args.seed}-{args.seed + args.seeds - 1} go beyond 0-"
                         f"{NUM_SPLITS - 1}: use --seed 0 --seeds {NUM_SPLITS} at most")


def run_train(args: argparse.Namespace) -> int:
    from bingnn.distill.cascade import DataCache, run_seeds, run_stage
    from bingnn.distill.recipe import NODE_MODELS, apply_overrides, single_run_config
    from bingnn.train.report import summary_row

    variant = NODE_MODELS[args.model][0]
    recipe = build_recipe(args, variant)
    _check_seeds(args)
    single_run_config(recipe, args.model, args.stage)  # every value, before training
    ctx = runtime(args)
    out = _out(args, "train-node")
    data = DataCache()

    def one(seed: int, folder: Path) -> list[dict[str, Any]]:
        cfg = single_run_config(apply_overrides(recipe, seed=seed), args.model, args.stage)
        rec = run_stage(cfg, folder, ctx, data=data, progress=not args.no_progress,
                        bf16=args.bf16)
        metric = next(iter(rec["test"]))
        say(ctx, args, f"seed {seed}: best epoch {rec['best_epoch']}, val "
            f"{100 * rec['val'][metric]:.2f}, test {100 * rec['test'][metric]:.2f}")
        return [summary_row(cfg["model"]["stage"], cfg["variant"], rec)]

    seeds = range(args.seed, args.seed + args.seeds)
    agg = run_seeds(one, seeds, out, ctx, f"{args.model} on {args.dataset}")
    _print_table(ctx, args, agg)
    say(ctx, args, f"results in {out}", always=True)
    return 0


def run_distill(args: argparse.Namespace) -> int:
    from bingnn.distill.cascade import DataCache, run_cascade, run_seeds
    from bingnn.distill.recipe import apply_overrides

    if args.teacher and not Path(args.teacher).is_file():
        raise FileNotFoundError(f"teacher model file not found: {args.teacher}")
    recipe = build_recipe(args, args.model)
    _check_seeds(args)
    ctx = runtime(args)
    out = _out(args, "distill-node")
    data = DataCache()

    def one(seed: int, folder: Path) -> list[dict[str, Any]]:
        rows = run_cascade(apply_overrides(recipe, seed=seed), folder, ctx,
                           progress=not args.no_progress, bf16=args.bf16, data=data,
                           last_stage=args.last_stage, echo=lambda t: None)
        metric = next(k for k in rows[0] if k.startswith("test_"))
        say(ctx, args, f"seed {seed}: " + ", ".join(
            f"stage {r['stage']} test {100 * r[metric]:.2f}" for r in rows))
        return rows

    seeds = range(args.seed, args.seed + args.seeds)
    agg = run_seeds(one, seeds, out, ctx, f"{args.model} on {args.dataset}: cascaded "
                    "distillation")
    _print_table(ctx, args, agg)
    say(ctx, args, f"results in {out}", always=True)
    return 0
