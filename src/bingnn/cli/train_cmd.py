"""``bingnn train``: train one model (float DGCNN or a binary DGCNN), optionally distilled from
a teacher model file. Resumable: re-running the same command continues from the last epoch."""

from __future__ import annotations

import argparse
from typing import Any

from bingnn.cli._common import (
    add_data,
    add_device,
    add_progress,
    int_list,
    positive_float,
    positive_int,
)

HELP = "train one model (DGCNN or binary DGCNN), optionally distilled from a teacher"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help=HELP,
        description="Train one point-cloud classifier. Writes OUT/config.json, metrics.csv, "
        "checkpoint.pt (resume), best.pt and final.pt. With --teacher, the loss is "
        "(1-a) CE + a KD + lambda LSP as in the distillation stages.",
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
    m.add_argument("--dropout", type=float, default=0.5, help="(default: 0.5)")
    add_data(p, train=True)
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=positive_int, default=250, help="(default: 250)")
    t.add_argument("--batch-size", type=positive_int, default=32, help="(default: 32)")
    t.add_argument("--test-batch-size", type=positive_int, default=16, help="(default: 16)")
    t.add_argument("--optimizer", choices=["adam", "sgd"], default="adam", help="(default: adam)")
    t.add_argument("--lr", type=positive_float, default=1e-3, help="(default: 1e-3)")
    t.add_argument("--weight-decay", type=float, default=1e-4, help="(default: 1e-4)")
    t.add_argument(
        "--schedule",
        choices=["cosine", "multistep", "step", "constant"],
        default="cosine",
        help="cosine; multistep = x0.5 at 1/2 and 3/4; step = x0.5 every 50 epochs",
    )
    t.add_argument("--label-smoothing", type=float, default=0.2, help="(default: 0.2)")
    t.add_argument("--seed", type=int, default=0, help="(default: 0)")
    d = p.add_argument_group("distillation (with --teacher)")
    d.add_argument("--teacher", default=None, help="teacher model file (e.g. a final.pt)")
    d.add_argument(
        "--init-from-teacher", action="store_true", help="start from the teacher's weights"
    )
    d.add_argument("--alpha", type=float, default=0.1, help="KD weight a (default: 0.1)")
    d.add_argument("--lsp-weight", type=float, default=100.0, help="LSP weight (default: 100)")
    d.add_argument("--temperature", type=positive_float, default=3.0, help="(default: 3)")
    d.add_argument("--kernel-s", default="auto", help="student LSP kernel (default: auto)")
    d.add_argument("--kernel-t", default="l2", help="teacher LSP kernel (default: l2)")
    p.add_argument("--out", required=True, help="output folder")
    add_device(p)
    add_progress(p)
    p.set_defaults(func=run)


_SCHEDULES: dict[str, dict[str, Any]] = {
    "cosine": {"type": "cosine"},
    "multistep": {"type": "multistep", "milestones": [0.5, 0.75], "gamma": 0.5},
    "step": {"type": "step", "step_size": 50, "gamma": 0.5},
    "constant": {"type": "constant"},
}


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    """The resolved run configuration (as a distillation stage's ``config.json``)."""
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
    data = {
        "dataset": args.dataset,
        "num_points": args.points,
        "download": args.download,
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
            kernel_s=_kernel(args.kernel_s, knn),
            kernel_t=_kernel(args.kernel_t, knn),
        )
    return {
        "command": "train",
        "stage": args.stage if args.model == "bindgcnn" else 0,
        "seed": args.seed,
        "variant": name,
        "data": data,
        "model": model,
        "train": {
            "optimizer": args.optimizer,
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "test_batch_size": args.test_batch_size,
            "schedule": dict(_SCHEDULES[args.schedule]),
        },
        "loss": loss,
        "teacher": args.teacher,
        "init_from_teacher": bool(args.teacher and args.init_from_teacher),
    }


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bingnn.distill.cascade import run_stage
    from bingnn.train.loop import resolve_device

    if args.init_from_teacher and not args.teacher:
        raise ValueError("--init-from-teacher needs --teacher")
    if args.teacher and not Path(args.teacher).is_file():
        raise FileNotFoundError(f"teacher model file not found: {args.teacher}")
    cfg = build_config(args)
    device = resolve_device(args.device)
    rec = run_stage(cfg, args.out, device, args.teacher, progress=not args.no_progress)
    print(
        f"{cfg['variant']}: test OA {100 * rec['test_oa']:.2f}%  mAcc {100 * rec['test_macc']:.2f}%"
        f"  (best OA {100 * rec['best_oa']:.2f}%, {rec['params']:,} parameters) -> {args.out}"
    )
    return 0
