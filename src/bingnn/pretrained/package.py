"""Package a finished training run as a pretrained model: weights, engine file and model card.

Usage (from a run folder written by ``bingnn train`` or one stage of ``bingnn distill``, which
holds ``best.pt`` -- the weights of the best validation epoch, the run's model --,
``config.json`` and ``done.json``)::

    python -m bingnn.pretrained.package RUN_DIR --name modelnet10-bf2 \\
        --data-dir ../shared/data/modelnet10 \\
        --command "bingnn distill --recipe modelnet10 --data-dir ../shared/data/modelnet10"

What it does, in order:

1. checks the run against the registry entry (architecture, variant, stage 3 for students,
   dataset ``modelnet10``) and that it finished;
2. stores the PyTorch state dict as safetensors (``--weights-dtype float16`` halves the size;
   the rounding keeps the sign of every weight, which is what binary layers use), and reloads
   the model *from those bytes*;
3. scores the reloaded model on the whole test split at the run's ``num_points`` (overall and
   mean per-class accuracy), exports students to ``.bgnn`` and scores the engine model too;
4. writes ``<name>.safetensors``, ``<name>.bgnn`` (students), ``<name>.json`` (the card) and
   ``<name>.md`` into ``--dest`` (default: the package's model folder), each atomically, after
   checking that the folder stays within ``--max-total-mb`` (5 MB: the repository's budget).

So every number on a card is measured on exactly the files shipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bingnn import __version__
from bingnn.pretrained import REGISTRY, model_dir
from bingnn.pretrained.card import CARD_VERSION, MODELNET_LICENSE, render_markdown, validate_card

__all__ = ["PackagingError", "main", "package_run"]

MAX_TOTAL_BYTES = 5 * 1000 * 1000
_NORMALIZATION = "centred on the mean, scaled so the farthest point is at radius 1"


class PackagingError(ValueError):
    """The run cannot be packaged as the requested model (one line, what to do)."""


def _sign_preserving_half(t: torch.Tensor) -> torch.Tensor:
    """float16 copy that never moves a value across zero: values that would round to 0 (or
    flip the ``w >= 0`` test of a binary weight) become the smallest float16 of their sign."""
    h = t.to(torch.float16)
    tiny = torch.tensor(torch.finfo(torch.float16).smallest_normal, dtype=torch.float16) / 1024
    pos = t >= 0
    h = torch.where(pos & (h <= 0), tiny, h)
    return torch.where(~pos & (h >= 0), -tiny, h)


def _state_bytes(model: torch.nn.Module, dtype: str, name: str) -> bytes:
    from safetensors.torch import save

    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if dtype == "float16" and v.is_floating_point():
            v = _sign_preserving_half(v)
        state[k] = v.contiguous().clone()  # no shared storage (safetensors refuses it)
    return save(state, metadata={"name": name, "format": "pt"})


def _accuracy(pred: np.ndarray, target: np.ndarray, num_classes: int) -> tuple[float, float]:
    from bingnn.data.metrics import mean_class_accuracy, overall_accuracy

    return overall_accuracy(pred, target), mean_class_accuracy(pred, target, num_classes)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PackagingError(f"{path}: cannot be read ({e})") from None


def _check_against_registry(name: str, model_config: dict[str, Any], cfg: dict[str, Any]) -> None:
    reg = REGISTRY[name]
    got = {k: model_config.get(k) for k in ("arch", "variant", "stage") if k in reg}
    want = {k: reg[k] for k in got}
    if got != want:
        raise PackagingError(f"{name} must be {want}, the run holds {got}")
    dataset = (cfg.get("data") or {}).get("dataset")
    if dataset != reg["dataset"]:
        raise PackagingError(f"{name} must be trained on {reg['dataset']}, the run used {dataset}")


def package_run(
    run_dir: str | os.PathLike,
    name: str,
    *,
    command: str,
    data_dir: str | os.PathLike | None = None,
    dest: str | os.PathLike | None = None,
    checkpoint: str = "best.pt",
    weights_dtype: str = "float32",
    max_total_bytes: int = MAX_TOTAL_BYTES,
    batch_size: int = 32,
    echo=print,
) -> dict[str, Any]:
    """Package ``run_dir`` as the registered model ``name`` (see the module docstring).

    Returns:
        The card written.

    Raises:
        PackagingError: unknown name, unfinished or mismatching run, size budget exceeded.
    """
    from bingnn.data import get_dataset
    from bingnn.engine import EngineModel, read_model_file
    from bingnn.models import build_model
    from bingnn.train.model_files import load_model_file

    if name not in REGISTRY:
        raise PackagingError(f"unknown pretrained name {name!r}; registered: {', '.join(REGISTRY)}")
    if weights_dtype not in ("float32", "float16"):
        raise PackagingError(f"weights dtype must be float32 or float16, got {weights_dtype!r}")
    if not command.strip():
        raise PackagingError("--command must give the command that trained the run")
    run = Path(run_dir)
    if not (run / "done.json").is_file():
        raise PackagingError(f"{run} is not a finished run (no done.json); finish training first")
    model, ck = load_model_file(run / checkpoint)
    cfg = dict(ck.get("config") or _read_json(run / "config.json"))
    model_config = dict(model.config)
    _check_against_registry(name, model_config, cfg)
    kind = REGISTRY[name]["kind"]
    num_points = int(cfg["data"]["num_points"])
    root = data_dir if data_dir is not None else cfg["data"].get("root")

    # 1. The weights as shipped, and the model rebuilt from them.
    blob = _state_bytes(model, weights_dtype, name)
    from safetensors.torch import load as load_bytes

    shipped = build_model(model_config)
    shipped.load_state_dict(load_bytes(blob), strict=True)
    shipped.eval()

    # 2. Accuracy on the whole test split, PyTorch then engine.
    test = get_dataset("modelnet10", "test", num_points=num_points, root=root, augment=False)
    x = test.points  # (M, N, 3) float32: exactly what training evaluated on
    y = test.labels
    with torch.no_grad():
        pred = np.concatenate([
            shipped(torch.from_numpy(x[s : s + batch_size])).argmax(-1).numpy()
            for s in range(0, len(x), batch_size)
        ])
    oa, macc = _accuracy(pred, y, test.num_classes)
    files: dict[str, bytes] = {f"{name}.safetensors": blob}
    engine_oa = engine_macc = None
    if kind == "student":
        from bingnn.export import export

        with tempfile.TemporaryDirectory() as tmp:
            bgnn = Path(tmp) / f"{name}.bgnn"
            export(shipped, bgnn, class_names=test.class_names)
            files[f"{name}.bgnn"] = bgnn.read_bytes()
            em = EngineModel(*read_model_file(bgnn), source=str(bgnn))
        epred = np.concatenate([em.predict(x[s : s + batch_size])
                                for s in range(0, len(x), batch_size)])
        engine_oa, engine_macc = _accuracy(epred, y, test.num_classes)

    def entry(fname: str) -> dict[str, Any]:
        data = files[fname]
        return {"name": fname, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

    card = {
        "card_version": CARD_VERSION,
        "name": name,
        "kind": kind,
        "description": REGISTRY[name]["description"],
        "model_config": model_config,
        "num_points": num_points,
        "k": int(model_config["k"]),
        "class_names": list(test.class_names),
        "input_normalization": _NORMALIZATION,
        "test_accuracy": oa,
        "mean_class_accuracy": macc,
        "engine_test_accuracy": engine_oa,
        "engine_mean_class_accuracy": engine_macc,
        "test_shapes": len(test),
        "dataset": {
            "name": "ModelNet10",
            "split": f"official split, {len(test)} test shapes scored",
            "description": (
                "ModelNet10 (Wu et al., CVPR 2015): 10 furniture classes of Princeton CAD "
                f"models, official split (3,991 train / 908 test), {num_points} points per "
                f"shape, {_NORMALIZATION}. Choices of epoch and hyper-parameters are the "
                "recipe's (see `recipe`); the test split was scored for this card."
            ),
            "license": MODELNET_LICENSE,
        },
        "recipe": cfg,
        "training": _read_json(run / "done.json"),
        "command": command.strip(),
        "weights_dtype": weights_dtype,
        "files": {"weights": entry(f"{name}.safetensors")}
        | ({"engine": entry(f"{name}.bgnn")} if kind == "student" else {}),
        "license": MODELNET_LICENSE,
        "bingnn_version": __version__,
    }
    validate_card(card, name)
    card_text = json.dumps(card, indent=2, sort_keys=True) + "\n"
    files[f"{name}.json"] = card_text.encode()
    files[f"{name}.md"] = render_markdown(card).encode()

    # 3. The size budget of the whole folder, then the writes.
    out = Path(dest) if dest is not None else model_dir()
    others = sum(
        p.stat().st_size for p in out.glob("*") if p.is_file() and p.name not in files
        and not p.name.startswith(".")
    ) if out.is_dir() else 0
    total = others + sum(len(b) for b in files.values())
    if total > max_total_bytes:
        raise PackagingError(
            f"{out} would hold {total / 1e6:.2f} MB, over the {max_total_bytes / 1e6:.2f} MB "
            "budget; use --weights-dtype float16 or a smaller model"
        )
    from bingnn.utils.atomic import atomic_write_bytes

    # The card goes last: a reader that finds a card finds the files it lists.
    for fname in sorted(files, key=lambda f: f.endswith((".json", ".md"))):
        atomic_write_bytes(out / fname, files[fname])
    line = f"{name}: OA {100 * oa:.2f}%  mAcc {100 * macc:.2f}% (PyTorch, {len(test)} shapes)"
    if engine_oa is not None:
        line += f"; engine OA {100 * engine_oa:.2f}%  mAcc {100 * engine_macc:.2f}%"
    echo(f"{line} -> {out} ({total / 1e6:.2f} MB in the folder)")
    return card


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bingnn.pretrained.package RUN_DIR --name NAME --command CMD``."""
    p = argparse.ArgumentParser(
        prog="python -m bingnn.pretrained.package",
        description="Write a finished run as a registered pretrained model (weights, engine "
        "file, model card) after scoring it on the whole ModelNet10 test split.",
    )
    p.add_argument("run", help="finished run folder (best.pt, config.json, done.json)")
    p.add_argument("--name", required=True, choices=sorted(REGISTRY))
    p.add_argument("--command", required=True, help="the command that trained the run")
    p.add_argument("--data-dir", default=None, help="ModelNet10 folder (default: the run's)")
    p.add_argument("--dest", default=None, help="model folder (default: the package's)")
    p.add_argument("--checkpoint", default="best.pt",
                   help="model file of the run (default: best.pt, the best validation epoch)")
    p.add_argument("--weights-dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--max-total-mb", type=float, default=MAX_TOTAL_BYTES / 1e6,
                   help="size budget of the model folder (default: 5)")
    args = p.parse_args(argv)
    try:
        package_run(
            args.run, args.name, command=args.command, data_dir=args.data_dir, dest=args.dest,
            checkpoint=args.checkpoint, weights_dtype=args.weights_dtype,
            max_total_bytes=int(args.max_total_mb * 1e6),
        )
    except (ValueError, OSError) as e:
        msg = " ".join(str(e).split())
        print(f"bingnn: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
