"""Cascaded (multi-stage) distillation of binary DGCNNs, resumable.

Stage 0 trains (or loads) the float DGCNN teacher; for each variant, stages 1-3 distil it into
ever more binary students (:mod:`bingnn.distill.recipe` holds the schedule). Layout of ``OUT``::

    OUT/recipe.json                  the resolved recipe
    OUT/float/stage0/                the teacher
    OUT/<variant>/stage<i>/          i = 1, 2, 3
        config.json  checkpoint.pt  metrics.csv  best.pt  final.pt  done.json  curves.png
    OUT/summary.json  OUT/summary.csv  OUT/accuracy.png

Each stage's ``final.pt`` is the teacher of the next stage; the students of stages 2 and 3
start from their teacher's weights. Running the same command again skips stages whose
``done.json`` exists and resumes an interrupted stage from its last epoch (see
:func:`bingnn.train.loop.fit`). A stage folder whose ``config.json`` differs from the new
resolved configuration is refused rather than silently mixed.

Example::

    recipe = load_recipe("quick")
    rows = run_cascade(recipe, "runs/quick", device="auto")
"""

from __future__ import annotations

import copy
import json
import os
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from bingnn.distill.binary_scale import match_binary_scale
from bingnn.distill.losses import DistillationLoss
from bingnn.distill.recipe import stage_config
from bingnn.train.loop import (
    DONE_FILE,
    evaluate,
    fit,
    load_model_file,
    make_loader,
    resolve_device,
    save_model_file,
    write_json,
)
from bingnn.train.metrics_log import MetricsLog, read_metrics
from bingnn.train.optim import build_optimizer, build_scheduler
from bingnn.utils.atomic import atomic_write_text

__all__ = ["SUMMARY_COLUMNS", "format_summary", "run_cascade", "run_stage", "stage_dir"]

#: ``callback(stage_config, epoch, row)`` after each epoch of any stage.
StageCallback = Callable[[dict[str, Any], int, dict[str, Any]], None]
SUMMARY_COLUMNS = ["stage", "variant", "oa", "macc", "best_oa", "params", "epochs", "time_s"]


def stage_dir(out: str | os.PathLike, stage: int, variant: str | None) -> Path:
    """``OUT/float/stage0`` or ``OUT/<variant>/stage<i>``."""
    return Path(out) / ("float" if stage == 0 else str(variant)) / f"stage{stage}"


class _DataCache:
    """Datasets built once per data configuration and shared by all stages."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Any, Any]] = {}

    def get(self, data: dict[str, Any], seed: int) -> tuple[Any, Any]:
        key = json.dumps([data, seed], sort_keys=True)
        if key not in self._cache:
            from bingnn.data import get_dataset

            common = {
                "num_points": int(data["num_points"]),
                "root": data.get("root"),
                "download": bool(data.get("download", False)),
                "seed": seed,
            }
            train = get_dataset(
                data["dataset"],
                "train",
                augment=data.get("augment", True),
                num_samples=data.get("train_samples"),
                **common,
            )
            common["download"] = False
            test = get_dataset(
                data["dataset"],
                "test",
                augment=False,
                num_samples=data.get("test_samples"),
                **common,
            )
            self._cache[key] = (train, test)
        return self._cache[key]


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    """The parts of a stage config that change results (not where files live)."""
    out = {k: v for k, v in cfg.items() if k != "recipe_source"}
    out["data"] = {
        k: v for k, v in dict(cfg.get("data", {})).items() if k not in ("root", "download")
    }
    return out


def _check_same_config(folder: Path, cfg: dict[str, Any]) -> None:
    f = folder / "config.json"
    if not f.exists():
        return
    try:
        old = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        return  # unreadable: fit() rewrites it
    a, b = _comparable(old), _comparable(json.loads(json.dumps(cfg)))
    if a != b:
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise ValueError(
            f"{folder} holds a run with a different configuration (differs in: "
            f"{', '.join(diff)}); use another output folder or delete that one"
        )


def _seed_for(cfg: dict[str, Any]) -> int:
    return int(cfg["seed"]) * 1000 + int(cfg["stage"]) * 97 + zlib.crc32(cfg["variant"].encode())


def run_stage(
    cfg: dict[str, Any],
    out_dir: str | os.PathLike,
    device: torch.device,
    teacher_path: str | os.PathLike | None = None,
    data: _DataCache | None = None,
    progress: bool = True,
    callbacks: Sequence[StageCallback] = (),
) -> dict[str, Any]:
    """Run one stage from its resolved config (see :func:`bingnn.distill.recipe.stage_config`).

    With ``teacher_path`` the student is distilled from that model file (KD + LSP as
    ``cfg["loss"]`` says, starting from the teacher's weights if ``cfg["init_from_teacher"]``);
    without, it is trained on labels alone. Returns the completion record of
    :func:`bingnn.train.loop.fit`.
    """
    from bingnn.models import build_model

    out = Path(out_dir)
    _check_same_config(out, cfg)
    if (out / DONE_FILE).exists():
        return json.loads((out / DONE_FILE).read_text())
    data = data or _DataCache()
    train_ds, test_ds = data.get(cfg["data"], int(cfg["seed"]))
    num_classes = train_ds.num_classes
    tr = cfg["train"]
    seed = _seed_for(cfg)
    test_loader = make_loader(test_ds, tr["test_batch_size"], train=False, device=device)
    desc = f"{cfg['variant']} stage {cfg['stage']}"

    if cfg["stage"] == 0 and cfg.get("teacher_file"):
        # A trained teacher is given: evaluate it and record it as this stage's result.
        model, _ = load_model_file(cfg["teacher_file"], device)
        mc = getattr(model, "config", {})
        if mc.get("num_classes") != num_classes:
            raise ValueError(
                f"teacher {cfg['teacher_file']} predicts {mc.get('num_classes')} classes but "
                f"the dataset has {num_classes}"
            )
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", cfg)
        ev = evaluate(model, test_loader, device, num_classes, progress)
        record = {
            "epochs": 0,
            "test_oa": ev["test_oa"],
            "test_macc": ev["test_macc"],
            "best_oa": ev["test_oa"],
            "best_epoch": 0,
            "params": sum(p.numel() for p in model.parameters()),
            "time_s": 0.0,
        }
        save_model_file(out / "final.pt", model, {"metrics": record, "config": cfg})
        write_json(out / DONE_FILE, record)
        return record

    torch.manual_seed(seed)
    model = build_model({**cfg["model"], "num_classes": num_classes})
    teacher = None
    if teacher_path is not None:
        teacher, _ = load_model_file(teacher_path, device)
        tc = getattr(teacher, "config", {})
        if tc.get("num_classes") != num_classes:
            raise ValueError(
                f"teacher {teacher_path} predicts {tc.get('num_classes')} classes but the "
                f"dataset has {num_classes}"
            )
        if cfg.get("init_from_teacher"):
            model.load_state_dict(teacher.state_dict())
            match_binary_scale(model, teacher)
        for p in teacher.parameters():
            p.requires_grad_(False)
    loss_cfg = cfg["loss"]
    if teacher is None:
        loss_fn = DistillationLoss(label_smoothing=loss_cfg.get("label_smoothing", 0.2))
    else:
        loss_fn = DistillationLoss(**loss_cfg)
    train_loader = make_loader(train_ds, tr["batch_size"], train=True, seed=seed, device=device)
    bn_loader = None
    if tr.get("recalibrate_bn"):
        plain = copy.copy(train_ds)  # same clouds, without the augmentation
        plain.augment = False
        bn_loader = make_loader(plain, tr["test_batch_size"], train=False, device=device)
    optimizer = build_optimizer(model.parameters(), tr["optimizer"], tr["lr"], tr["weight_decay"])
    scheduler = build_scheduler(optimizer, tr["schedule"], tr["epochs"])
    cbs = [lambda e, r, cb=cb: cb(cfg, e, r) for cb in callbacks]
    record = fit(
        model,
        train_loader,
        test_loader,
        optimizer,
        scheduler,
        loss_fn,
        epochs=tr["epochs"],
        out_dir=out,
        device=device,
        num_classes=num_classes,
        teacher=teacher,
        config=cfg,
        seed=seed,
        progress=progress,
        callbacks=cbs,
        desc=desc,
        bn_loader=bn_loader,
    )
    try:
        from bingnn.train.plots import plot_training_curves

        plot_training_curves(read_metrics(out / "metrics.csv"), out / "curves.png", desc)
    except (OSError, ValueError, KeyError) as e:  # a chart must never fail a finished stage
        tqdm.write(f"warning: could not draw {out / 'curves.png'}: {e}")
    return record


def _row(stage: int, variant: str, rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "stage": stage,
        "variant": variant,
        "oa": rec["test_oa"],
        "macc": rec["test_macc"],
        "best_oa": rec["best_oa"],
        "params": rec["params"],
        "epochs": rec["epochs"],
        "time_s": rec["time_s"],
    }


def format_summary(rows: Sequence[dict[str, Any]]) -> str:
    """Plain-text table: stage, variant, OA and mAcc (%), parameters, minutes."""
    head = f"{'stage':>5}  {'variant':<16}{'OA %':>7}{'mAcc %':>8}{'best OA':>9}{'params':>10}"
    lines = [head + f"{'min':>7}", "-" * (len(head) + 7)]
    for r in rows:
        lines.append(
            f"{r['stage']:>5}  {r['variant']:<16}{100 * r['oa']:>7.2f}{100 * r['macc']:>8.2f}"
            f"{100 * r['best_oa']:>9.2f}{r['params']:>10,}{r['time_s'] / 60:>7.1f}"
        )
    return "\n".join(lines)


def write_summary(out: Path, rows: list[dict[str, Any]], title: str = "") -> None:
    write_json(out / "summary.json", rows)
    csv_path = out / "summary.csv"
    if csv_path.exists():
        csv_path.unlink()  # rewritten whole: its columns may come from an older version
    MetricsLog(csv_path, SUMMARY_COLUMNS, key="stage").rewrite(rows)
    from bingnn.train.plots import plot_cascade_accuracy

    plot_cascade_accuracy(rows, out / "accuracy.png", title)


def run_cascade(
    recipe: dict[str, Any],
    out: str | os.PathLike,
    device: str | torch.device = "auto",
    progress: bool = True,
    callbacks: Sequence[StageCallback] = (),
    echo: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) stage 0 and stages 1-3 of every variant of ``recipe`` into ``out``.

    Args:
        recipe: from :func:`bingnn.distill.recipe.load_recipe` (+ ``apply_overrides``).
        out: output folder.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        progress: tqdm progress bars and per-epoch lines.
        callbacks: ``cb(stage_config, epoch, row)`` after each epoch.
        echo: where to print stage headers and the summary (default ``tqdm.write``).

    Returns:
        summary rows ``{"stage", "variant", "oa", "macc", "best_oa", "params", "epochs",
        "time_s"}``, also written to ``summary.json``/``summary.csv`` with ``accuracy.png``.
    """
    say = echo or tqdm.write
    dev = resolve_device(device)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "recipe.json", recipe)
    data = _DataCache()
    rows: list[dict[str, Any]] = []

    def one(stage: int, variant: str | None, teacher: Path | None) -> Path:
        cfg = stage_config(recipe, stage, variant)
        folder = stage_dir(root, stage, variant)
        done = (folder / DONE_FILE).exists()
        name = cfg["variant"]
        if done:
            _check_same_config(folder, cfg)
            say(f"[{name} stage {stage}] already done, skipped ({folder})")
        else:
            say(f"[{name} stage {stage}] {cfg['train']['epochs']} epochs on {dev} -> {folder}")
        rec = run_stage(cfg, folder, dev, teacher, data, progress, callbacks)
        rows.append(_row(stage, name, rec))
        return folder / "final.pt"

    teacher = one(0, None, None)
    for variant in recipe["variants"]:
        t = teacher
        for stage in (1, 2, 3):
            t = one(stage, variant, t)
    write_summary(root, rows, f"{recipe.get('name', '')}: accuracy per stage")
    say(format_summary(rows))
    atomic_write_text(root / "summary.txt", format_summary(rows) + "\n")
    say(f"results: {root / 'summary.csv'}, chart: {root / 'accuracy.png'}")
    return rows
