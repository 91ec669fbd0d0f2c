"""``bingnn eval``: overall and mean per-class accuracy of a saved model on a test set."""

from __future__ import annotations

import argparse

from bingnn.cli._common import add_data, add_device, add_progress, positive_int

HELP = "evaluate a saved model (final.pt, best.pt or checkpoint.pt): OA and mAcc"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help=HELP,
        description="Print the test overall accuracy (OA) and mean per-class accuracy (mAcc) "
        "of a model file written by 'bingnn train' or 'bingnn distill'. The dataset "
        "defaults to the one recorded with the model.",
    )
    p.add_argument("checkpoint", help="model file (final.pt, best.pt or checkpoint.pt)")
    add_data(p, defaults=False)
    p.add_argument("--batch-size", type=positive_int, default=32, help="(default: 32)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_device(p)
    add_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from bingnn.data import get_dataset
    from bingnn.train.loop import evaluate, load_model_file, make_loader, resolve_device

    device = resolve_device(args.device)
    model, ck = load_model_file(args.checkpoint, device)
    data = dict((ck.get("config") or {}).get("data") or {})
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
        seed=int((ck.get("config") or {}).get("seed", 0)),
        num_samples=samples,
    )
    nc = model.config.get("num_classes")
    if nc != test.num_classes:
        raise ValueError(
            f"the model predicts {nc} classes but {dataset} has {test.num_classes}; "
            "pass the --dataset it was trained on"
        )
    loader = make_loader(test, args.batch_size, train=False, device=device)
    res = evaluate(model, loader, device, test.num_classes, progress=not args.no_progress)
    out = {
        "checkpoint": str(args.checkpoint),
        "dataset": dataset,
        "samples": len(test),
        "oa": res["test_oa"],
        "macc": res["test_macc"],
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"{args.checkpoint}: {dataset} test ({len(test)} clouds): "
            f"OA {100 * out['oa']:.2f}%  mAcc {100 * out['macc']:.2f}%"
        )
    return 0
