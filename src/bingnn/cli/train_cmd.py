"""``bingnn train``: train one point-cloud classifier (float DGCNN or a binary DGCNN),
optionally distilled from a teacher model file. Resumable: re-running the same command
continues after the last finished epoch. Data-parallel under torchrun."""

from __future__ import annotations

import argparse
from typing import Any

from bingnn.cli._common import add_data, int_list, positive_float, positive_int
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

HELP = "train one model (DGCNN or binary DGCNN), optionally distilled from a teacher"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help=HELP,
        description="Train one point-cloud classifier. A seeded, stratified share of the "
        "training set (--val-fraction, 10%%) is held out for validation: it selects the best "
        "epoch (best.pt); the test set is evaluated once, at the end, on that model. Writes "
        "OUT/config.json, metrics.csv, checkpoint.pt (resume), best.pt, final.pt and "
        "done.json. With --teacher, the loss is (1-a) CE + a KD + lambda LSP as in the "
        "distillation stages.",
    )
    m = p.add_argument_group("model")
    m.add_argument(
        "--model", choices=["dgcnn", "bindgcnn"], default="dgcnn", help="(default: dgcnn)"
    )
    m.add_argument(
        "--variant",
        choices=["rf", "bf1", "bf2", "bf1_bal", "bf2_bal"],
        default="bf2",
        help="binary DGCNN variant (default: bf2)",
    )
    m.add_argument(
        "--knn",
        choices=["hamming", "l2"],
        default=None,
        help="k-NN metric after the first layer (default: hamming; l2 for rf)",
    )
    m.add_argument(
        "--stage",
        type=int,
        choices=[1, 2, 3],
        default=3,
        help="1 = float weights + tanh, 2 = binary activations, 3 = fully binary (default: 3)",
    )
    m.add_argument("--k", type=positive_int, default=20, help="neighbours (default: 20)")
    m.add_argument("--widths", type=int_list, default=[64, 64, 128, 256], help="EdgeConv widths")
    m.add_argument("--emb-dims", type=positive_int, default=1024, help="(default: 1024)")
    m.add_argument("--mlp", type=int_list, default=[512, 256], help="classifier hidden widths")
    m.add_argument("--dropout", type=fraction, default=0.5, help="(default: 0.5)")
    add_data(p, train=True)
    p.add_argument(
        "--val-fraction", type=fraction, default=0.1,
        help="share of the training clouds held out for validation, stratified and seeded "
        "(default: 0.1)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=positive_int, default=250, help="(default: 250)")
    t.add_argument("--batch-size", type=positive_int, default=32,
                   help="clouds per step, all processes together (default: 32)")
    t.add_argument("--eval-batch-size", type=positive_int, default=16,
                   help="clouds per evaluation step and process (default: 16)")
    t.add_argument("--optimizer", choices=["adam", "sgd"], default="adam", help="(default: adam)")
    t.add_argument("--lr", type=positive_float, default=1e-3, help="(default: 1e-3)")
    t.add_argument("--weight-decay", type=non_negative_float, default=1e-4,
                   help="(default: 1e-4)")
    add_schedule(t, "cosine")
    t.add_argument("--label-smoothing", type=fraction, default=0.2, help="(default: 0.2)")
    t.add_argument("--recalibrate-bn", action="store_true",
                   help="recompute BatchNorm statistics over the un-augmented training set "
                   "after every epoch")
    t.add_argument("--recalibrate-samples", type=positive_int, default=None, metavar="N",
                   help="with --recalibrate-bn: recalibrate on a fixed, seeded, class-stratified "
                   "subset of N training clouds (default: all)")
    t.add_argument("--seed", type=int, default=0, help="(default: 0)")
    d = p.add_argument_group("distillation (with --teacher)")
    d.add_argument("--teacher", default=None, help="teacher model file (e.g. a best.pt)")
    d.add_argument(
        "--init-from-teacher", action="store_true", help="start from the teacher's weights"
    )
    d.add_argument("--alpha", type=unit_interval, default=0.1, help="KD weight a (default: 0.1)")
    d.add_argument("--lsp-weight", type=non_negative_float, default=100.0,
                   help="LSP weight (default: 100)")
    d.add_argument("--temperature", type=positive_float, default=3.0, help="(default: 3)")
    d.add_argument("--kernel-s", default="auto", help="student LSP kernel (default: auto)")
    d.add_argument("--kernel-t", default="l2", help="teacher LSP kernel (default: l2)")
    p.add_argument("--out", required=True, help="output folder")
    add_runtime(p)
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    """The resolved run configuration (the same form as a distillation stage's
    ``config.json``)."""
    from bingnn.distill.recipe import _kernel, format_variant, parse_variant

    common = {
        "k": args.k,
        "widths": args.widths,
        "emb_dims": args.emb_dims,
        "mlp": args.mlp,
        "dropout": args.dropout,
    }
    if args.model == "dgcnn":
        model = {"arch": "dgcnn", **common}
        name, knn = "dgcnn", "l2"
    else:
        variant, knn = parse_variant(
            args.variant if args.knn is None else f"{args.variant}-{args.knn}"
        )
        model = {"arch": "bindgcnn", "variant": variant, "knn": knn, "stage": args.stage, **common}
        name = format_variant(variant, knn)
    data: dict[str, Any] = {
        "dataset": args.dataset,
        "num_points": args.points,
        "download": args.download,
        "val_fraction": args.val_fraction,
    }
    if args.data_dir:
        data["root"] = args.data_dir
    if args.train_samples:
        data["train_samples"] = args.train_samples
    if args.test_samples:
        data["test_samples"] = args.test_samples
    loss: dict[str, Any] = {"label_smoothing": args.label_smoothing}
    if args.teacher:
        loss.update(
            alpha=args.alpha,
            lsp_weight=args.lsp_weight,
            temperature=args.temperature,
            kernel_s=_kernel(args.kernel_s, knn, "--kernel-s"),
            kernel_t=_kernel(args.kernel_t, knn, "--kernel-t"),
        )
    train: dict[str, Any] = {
        "optimizer": args.optimizer,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "eval_batch_size": args.eval_batch_size,
        "schedule": schedule_from_args(args),
    }
    if args.recalibrate_samples is not None and not args.recalibrate_bn:
        raise ValueError("--recalibrate-samples sizes the BatchNorm recalibration pass; add "
                         "--recalibrate-bn")
    if args.recalibrate_bn:
        train["recalibrate_bn"] = True
        if args.recalibrate_samples is not None:
            train["recalibrate_samples"] = args.recalibrate_samples
    return {
        "task": "pointcloud",
        "command": "train",
        "stage": args.stage if args.model == "bindgcnn" else 0,
        "seed": args.seed,
        "variant": name,
        "data": data,
        "model": model,
        "train": train,
        "loss": loss,
        "teacher": args.teacher,
        "init_from_teacher": bool(args.teacher and args.init_from_teacher),
    }


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bingnn.distill.cascade import run_stage
    from bingnn.distill.recipe import check_stage_config

    if args.init_from_teacher and not args.teacher:
        raise ValueError("--init-from-teacher needs --teacher")
    if args.teacher and not Path(args.teacher).is_file():
        raise FileNotFoundError(f"teacher model file not found: {args.teacher}")
    cfg = build_config(args)
    check_stage_config(cfg, "train")  # every value, before a process group or a file
    ctx = runtime(args)
    rec = run_stage(cfg, args.out, ctx, args.teacher, progress=not args.no_progress,
                    bf16=args.bf16)
    test, val = rec["test"], rec["val"] or {}
    say(ctx, args, f"{cfg['variant']}: test OA {100 * test['oa']:.2f}%  mAcc "
        f"{100 * test['macc']:.2f}% (best validation epoch {rec['best_epoch']}: val OA "
        f"{100 * val.get('oa', float('nan')):.2f}%; {rec['params']:,} parameters) -> "
        f"{args.out}", always=True)
    return 0
