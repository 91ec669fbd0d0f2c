"""``bingnn eval``: overall and mean per-class accuracy of a saved model on a test set."""

from __future__ import annotations

import argparse

from bingnn.cli._common import add_data, add_device, add_progress, positive_int

HELP = "evaluate a saved model (best.pt, final.pt or checkpoint.pt): OA and mAcc"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help=HELP,
        description="Print the test overall accuracy (OA) and mean per-class accuracy (mAcc) "
        "of a model file written by 'bingnn train' or 'bingnn distill' (best.pt is the model "
        "a run selected on validation). The dataset defaults to the one recorded with the "
        "model.",
    )
    p.add_argument("checkpoint", help="model file (best.pt, final.pt or checkpoint.pt)")
    add_data(p, defaults=False)
    p.add_argument("--batch-size", type=positive_int, default=32, help="(default: 32)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_device(p)
    add_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from bingnn.data import get_dataset
    from bingnn.data.metrics import mean_class_accuracy, overall_accuracy
    from bingnn.train.model_files import load_model_file, resolve_device
    from bingnn.train.pointcloud_task import predict_clouds

    device = resolve_device(args.device)
    model, ck = load_model_file(args.checkpoint, device)
    cfg = ck.get("config") or {}
    if cfg.get("task", "pointcloud") != "pointcloud" or "num_classes" not in model.config:
        raise ValueError(
            f"{args.checkpoint} is a node classifier; 'bingnn eval' scores point-cloud models "
            "(the node commands report their test scores in results.csv)"
        )
    data = dict(cfg.get("data") or {})
    dataset = args.dataset or data.get("dataset", "synthetic")
    points = args.points or data.get("num_points", 1024)
    if args.test_samples is not None:
        samples = args.test_samples
    else:
        samples = data.get("test_samples") if dataset == data.get("dataset") else None
    root = args.data_dir or (data.get("root") if dataset == data.get("dataset") else None)
    test = get_dataset(
        dataset,
        "test",
        num_points=points,
        root=root,
        download=args.download,
        augment=False,
        seed=int(cfg.get("seed", 0)),
        num_samples=samples,
    )
    nc = model.config.get("num_classes")
    if nc != test.num_classes:
        raise ValueError(
            f"the model predicts {nc} classes but {dataset} has {test.num_classes}; "
            "pass the --dataset it was trained on"
        )
    pred, true = predict_clouds(model, test, args.batch_size, device)
    out = {
        "checkpoint": str(args.checkpoint),
        "dataset": dataset,
        "samples": len(test),
        "oa": overall_accuracy(pred, true),
        "macc": mean_class_accuracy(pred, true, test.num_classes),
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"{args.checkpoint}: {dataset} test ({len(test)} clouds): "
            f"OA {100 * out['oa']:.2f}%  mAcc {100 * out['macc']:.2f}%"
        )
    return 0
