"""``bingnn train-node`` and ``bingnn distill-node``: node classification on Planetoid,
Facebook Page-Page, Actor and OGB.

Both run ``--seeds`` independent runs and report mean and standard deviation (OGB's
leaderboard protocol: test score at the best validation epoch). Run seed ``s`` seeds the model
and, where a data set has no single fixed split, picks the split: Facebook's stratified split
with split seed ``s``, Actor's standard split ``s`` (``bingnn.graphs.datasets``). Layout of
``--out``::

    seed<k>/metrics.csv, checkpoint.pt, best.pt, result.json      (train-node)
    seed<k>/stage<s>/metrics.csv, checkpoint.pt, best.pt           (distill-node)
    results.csv   one row per seed (and stage), then mean and std rows
    summary.json  mean / std per stage
    curves.png | cascade.png

Re-running the same command resumes: finished seeds (and stages) are loaded, an interrupted
one continues from its last epoch.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import time
from pathlib import Path
from typing import Any

from bingnn.cli._common import add_device, add_progress, positive_float, positive_int

__all__ = ["register", "run_train", "run_distill", "build_node_model", "mean_std"]

MODELS = ("sage", "binsage", "gcn", "bingcn")


def _fanouts(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected fan-outs like 15,10,5, got {text!r}") from None
    if not vals or any(v == 0 or v < -1 for v in vals):
        raise argparse.ArgumentTypeError(f"fan-outs must be positive or -1, got {text!r}")
    return vals


def _fraction(text: str) -> float:
    v = float(text)
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a value in [0, 1), got {text}")
    return v


def _add_common(p: argparse.ArgumentParser, distill: bool) -> None:
    from bingnn.graphs.names import NODE_DATASETS

    d = p.add_argument_group("data")
    d.add_argument("--dataset", required=True, choices=NODE_DATASETS)
    d.add_argument("--root", default="data", help="dataset cache folder (default: data)")
    d.add_argument("--raw-dir", default=None,
                   help="folder with the original release files, copied into --root "
                   "(offline): Planetoid's ind.<name>.*, Facebook's *_edges.csv, "
                   "*_target.csv, *_features.json, Actor's out1_*.txt and split files")
    d.add_argument("--download", action="store_true", help="download the dataset if missing")
    d.add_argument("--normalize-features", action=argparse.BooleanOptionalAction, default=None,
                   help="row-normalise node features (default: on for Planetoid, off for "
                   "Facebook, Actor and OGB)")
    m = p.add_argument_group("model (defaults: the dataset's recipe)")
    if distill:
        m.add_argument("--model", required=True, choices=("binsage", "bingcn"),
                       help="the binary student family; the teacher is its float version")
    else:
        m.add_argument("--model", required=True, choices=MODELS)
        m.add_argument("--stage", type=int, choices=(0, 1, 2, 3), default=None,
                       help="quantization stage of binsage/bingcn (default 3, fully binary)")
    m.add_argument("--layers", type=positive_int)
    m.add_argument("--hidden", type=positive_int)
    m.add_argument("--dropout", type=_fraction)
    m.add_argument("--input-dropout", type=_fraction)
    m.add_argument("--centering", choices=("batchnorm", "mean", "median", "none"))
    m.add_argument("--real-last", action="store_true",
                   help="keep real weights in the last (classifier) layer")
    m.add_argument("--no-node-scale", action="store_true", help="bingcn: no per-node scale")
    t = p.add_argument_group("training (defaults: the dataset's recipe)")
    t.add_argument("--epochs", type=positive_int)
    t.add_argument("--lr", type=positive_float)
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--scheduler", choices=("none", "plateau", "step"))
    t.add_argument("--mode", choices=("full", "minibatch"), help="full batch or sampled")
    t.add_argument("--fanouts", type=_fanouts, help="neighbours per hop, e.g. 15,10,5")
    t.add_argument("--batch-size", type=positive_int, help="seed nodes per mini-batch")
    t.add_argument("--eval-mode", choices=("full", "layerwise"))
    t.add_argument("--eval-batch-size", type=positive_int, default=4096)
    t.add_argument("--sampler", choices=("auto", "pyg", "csr"), default="auto",
                   help="neighbour sampler: PyG's when available (auto), or bingnn's CSR one")
    t.add_argument("--seeds", type=positive_int, default=1, help="independent runs (default 1)")
    t.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    t.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    o = p.add_argument_group("output")
    o.add_argument("--out", default=None, help="output folder (default runs/<cmd>/<data>-<model>)")
    o.add_argument("--fresh", action="store_true",
                   help="ignore finished seeds and checkpoints in --out (default: resume)")
    add_device(p)
    add_progress(p)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-node", help="train a (binary) GraphSAGE/GCN node classifier",
        description="Train float or binary GraphSAGE/GCN on Planetoid, Facebook Page-Page, "
        "Actor or OGB node property prediction, over several seeds (mean +- std).",
    )
    _add_common(p, distill=False)
    p.set_defaults(func=run_train)
    q = subparsers.add_parser(
        "distill-node", help="three-stage cascaded distillation of a binary node classifier",
        description="Float teacher -> stage 1 (tanh) -> stage 2 (binary activations) -> "
        "stage 3 (fully binary), each student initialised from its teacher, logit KD "
        "(and optional LSP on the graph's edges).",
    )
    _add_common(q, distill=True)
    q.add_argument("--kd-alpha", type=float, default=None,
                   help="KD weight a (default: the recipe's, 0.9 on Planetoid)")
    q.add_argument("--kd-nodes", choices=("all", "train"), default=None,
                   help="nodes KD is taken over: every node of the graph (all; needs no "
                   "labels) or the labelled training nodes only (train, the paper's recipe); "
                   "default: the recipe's")
    q.add_argument("--kd-temperature", type=positive_float, default=2.0, help="T (default 2)")
    q.add_argument("--lsp-weight", type=float, default=0.0,
                   help="LSP weight lambda on the graph's edges (default 0: off)")
    q.add_argument("--last-stage", type=int, choices=(1, 2, 3), default=3)
    q.add_argument("--teacher", default=None,
                   help="best.pt of a trained float model (train-node --model sage|gcn): "
                   "skips stage 0")
    q.set_defaults(func=run_distill)


# --------------------------------------------------------------------------------------------


def build_node_model(kind: str, in_channels: int, out_channels: int, opts: dict[str, Any],
                     stage: int | None = None):
    """Model of family ``kind`` (sage|binsage|gcn|bingcn) from recipe-style options."""
    from bingnn.models.gcn import GCN, BinGCN
    from bingnn.models.graphsage import BinSAGE, GraphSAGE

    common = dict(dropout=opts["dropout"],
                  input_dropout=opts["input_dropout"], centering=opts["centering"],
                  binary_last=not opts.get("real_last", False))
    if kind in ("sage", "binsage"):
        cls = GraphSAGE if kind == "sage" else BinSAGE
    elif kind in ("gcn", "bingcn"):
        cls = GCN if kind == "gcn" else BinGCN
        common["node_scale"] = not opts.get("no_node_scale", False)
        common["cached"] = opts.get("mode") == "full"
    else:
        raise ValueError(f"unknown model {kind!r}; choose one of {MODELS}")
    if stage is None:
        stage = 0 if kind in ("sage", "gcn") else 3
    # PyG's argument order: (in_channels, hidden_channels, num_layers, out_channels)
    return cls(in_channels, opts["hidden"], opts["layers"], out_channels, stage=stage, **common)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    from bingnn.graphs.datasets import recipe

    opts = recipe(args.dataset)
    for key in ("layers", "hidden", "dropout", "input_dropout", "centering", "epochs", "lr",
                "weight_decay", "scheduler", "mode", "fanouts", "batch_size", "eval_mode",
                "kd_alpha", "kd_nodes"):
        v = getattr(args, key, None)
        if v is not None:
            opts[key] = v
    opts["real_last"] = args.real_last
    opts["no_node_scale"] = args.no_node_scale
    return opts


def _train_config(opts: dict[str, Any], args: argparse.Namespace, ds, seed: int):
    from bingnn.graphs.node_trainer import TrainConfig

    return TrainConfig(
        epochs=opts["epochs"], lr=opts["lr"], weight_decay=opts["weight_decay"],
        mode=opts["mode"], fanouts=list(opts.get("fanouts", [15, 10, 5])),
        batch_size=opts.get("batch_size", 1024), eval_mode=opts["eval_mode"],
        eval_batch_size=args.eval_batch_size, scheduler=opts["scheduler"], metric=ds.metric,
        multilabel=ds.multilabel, seed=seed, sampler_backend=args.sampler,
        kd_alpha=opts["kd_alpha"], kd_nodes=opts["kd_nodes"],
        kd_temperature=getattr(args, "kd_temperature", 2.0),
    )


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    if not values:
        return float("nan"), float("nan")
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def _write_csv(path: Path, rows: list[dict[str, Any]], fields: list[str]) -> None:
    from bingnn.utils.atomic import atomic_write_text

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def _plot_curves(path: Path, histories: dict[int, list[dict[str, float]]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from bingnn.utils.atomic import atomic_write_bytes

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
    for seed, h in sorted(histories.items()):
        ep = [r["epoch"] for r in h]
        a1.plot(ep, [r["loss"] for r in h], lw=0.8, label=f"seed {seed}")
        a2.plot(ep, [100 * r["val"] for r in h], lw=0.8)
    a1.set_xlabel("epoch")
    a1.set_ylabel("train loss")
    a2.set_xlabel("epoch")
    a2.set_ylabel("validation score (%)")
    if len(histories) <= 10:
        a1.legend(fontsize=6)
    fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _setup(args: argparse.Namespace, cmd: str):
    import torch

    from bingnn.graphs.datasets import load_node_dataset
    from bingnn.train.loop import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    ds = load_node_dataset(args.dataset, args.root, raw_dir=args.raw_dir,
                           download=args.download, normalize_features=args.normalize_features)
    for seed in range(args.seed, args.seed + args.seeds):
        ds.for_seed(seed)  # a seed without a split (Actor has 10) fails before any training
    out = Path(args.out or f"runs/{cmd}/{args.dataset}-{args.model}")
    out.mkdir(parents=True, exist_ok=True)
    return ds, device, out


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.no_progress:
        print(text, flush=True)


def run_train(args: argparse.Namespace) -> int:
    from bingnn.graphs.node_trainer import FitResult, fit
    from bingnn.train.checkpoint import save_checkpoint
    from bingnn.utils.atomic import atomic_write_text

    ds, device, out = _setup(args, "train-node")
    opts = _options(args)
    if opts["mode"] == "minibatch":
        ds.densify_features()  # the samplers slice rows of x
    rows, histories = [], {}
    for seed in range(args.seed, args.seed + args.seeds):
        sdir = out / f"seed{seed}"
        done = sdir / "result.json"
        if done.exists() and not args.fresh:
            res = json.loads(done.read_text())
            _say(args, f"seed {seed}: finished earlier, test {100 * res['test']:.2f}")
        else:
            import torch

            torch.manual_seed(seed)
            model = build_node_model(args.model, ds.data.num_features, ds.num_classes, opts,
                                     stage=args.stage)
            cfg = _train_config(opts, args, ds, seed)
            t0 = time.time()
            r: FitResult = fit(model, ds.for_seed(seed), cfg, evaluator=ds.evaluator,
                               out_dir=sdir,
                               resume=not args.fresh, progress=not args.no_progress,
                               device=device)
            save_checkpoint(sdir / "best.pt", {"model": r.state_dict,
                                               "model_config": model.config})
            res = {**r.summary(), "seconds": time.time() - t0, "history": r.history}
            atomic_write_text(done, json.dumps(res))
            _say(args, f"seed {seed}: best epoch {r.best_epoch}, val {100 * r.val:.2f}, "
                 f"test {100 * r.test:.2f}")
        histories[seed] = res["history"]
        rows.append({"seed": seed, **{k: res[k] for k in ("best_epoch", "train", "val", "test")}})
    summary = _summarise(rows, ["train", "val", "test"])
    fields = ["seed", "best_epoch", "train", "val", "test"]
    _write_csv(out / "results.csv", rows + summary["rows"], fields)
    atomic_write_text(out / "summary.json", json.dumps(
        {"dataset": args.dataset, "model": args.model, "options": opts,
         "seeds": len(rows), **summary["stats"]}, indent=2))
    _plot_curves(out / "curves.png", histories, f"{args.model} on {args.dataset}")
    print(_table([{"run": f"{args.model} ({len(rows)} seeds)", **summary["stats"]}]))
    print(f"results in {out}")
    return 0


def _summarise(rows: list[dict[str, Any]], keys: list[str]) -> dict[str, Any]:
    stats, mean_row, std_row = {}, {"seed": "mean"}, {"seed": "std"}
    for k in keys:
        m, s = mean_std([float(r[k]) for r in rows])
        stats[f"{k}_mean"], stats[f"{k}_std"] = m, s
        mean_row[k], std_row[k] = m, s
    return {"stats": stats, "rows": [mean_row, std_row]}


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'run':<32} {'val (%)':>16} {'test (%)':>16}"]
    for r in rows:
        val = f"{100 * r['val_mean']:.2f} +- {100 * r['val_std']:.2f}"
        test = f"{100 * r['test_mean']:.2f} +- {100 * r['test_std']:.2f}"
        lines.append(f"{r['run']:<32} {val:>16} {test:>16}")
    return "\n".join(lines)


def run_distill(args: argparse.Namespace) -> int:
    import torch

    from bingnn.graphs.node_distill import default_stage_configs, run_cascade
    from bingnn.train.checkpoint import load_checkpoint
    from bingnn.train.plots import plot_cascade_accuracy
    from bingnn.utils.atomic import atomic_write_text

    ds, device, out = _setup(args, "distill-node")
    opts = _options(args)
    if opts["mode"] == "minibatch":
        ds.densify_features()  # the samplers slice rows of x
    teacher = None
    if args.teacher:
        st = load_checkpoint(args.teacher)
        cfg = st.get("model_config") or {}
        if cfg.get("stage") != 0:
            raise ValueError(f"{args.teacher} is not a float (stage-0) model")
        from bingnn.models import build_model

        teacher = build_model(cfg)
        teacher.load_state_dict(st["model"])
    rows = []
    for seed in range(args.seed, args.seed + args.seeds):
        torch.manual_seed(seed)
        base = _train_config(opts, args, ds, seed)
        configs = default_stage_configs(base, lsp_weight=args.lsp_weight)

        def make(stage: int):
            return build_node_model(args.model, ds.data.num_features, ds.num_classes, opts,
                                    stage=stage)

        res = run_cascade(make, ds.for_seed(seed), configs,
                          teacher=None if teacher is None else _clone(teacher),
                          evaluator=ds.evaluator, out_dir=out / f"seed{seed}",
                          resume=not args.fresh, progress=not args.no_progress,
                          last_stage=args.last_stage, device=device)
        for r in res.table():
            rows.append({"seed": seed, **r})
        _say(args, f"seed {seed}: " + ", ".join(
            f"stage {r['stage']} test {100 * r['test']:.2f}" for r in res.table()))
    stages = sorted({r["stage"] for r in rows})
    table_rows, chart, summary = [], [], {}
    fields = ["seed", "stage", "best_epoch", "train", "val", "test"]
    all_rows = list(rows)
    for s in stages:
        srows = [r for r in rows if r["stage"] == s]
        st = _summarise(srows, ["train", "val", "test"])
        for extra in st["rows"]:
            all_rows.append({**extra, "stage": s})
        summary[f"stage{s}"] = st["stats"]
        name = "float teacher" if s == 0 else f"stage {s}"
        table_rows.append({"run": f"{name} ({len(srows)} seeds)", **st["stats"]})
        chart.append({"stage": s, "variant": args.model, "oa": st["stats"]["test_mean"]})
    _write_csv(out / "results.csv", all_rows, fields)
    atomic_write_text(out / "summary.json", json.dumps(
        {"dataset": args.dataset, "model": args.model, "options": opts,
         "lsp_weight": args.lsp_weight, "seeds": args.seeds, "stages": summary}, indent=2))
    plot_cascade_accuracy(chart, out / "cascade.png",
                          title=f"{args.model} on {args.dataset}: cascaded distillation")
    print(_table(table_rows))
    print(f"results in {out}")
    return 0


def _clone(model):
    import copy

    return copy.deepcopy(model)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m bingnn.cli.node_cmd train-node ...``)."""
    parser = argparse.ArgumentParser(prog="bingnn")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
