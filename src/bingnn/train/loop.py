"""The epoch loop: train one epoch, evaluate, and :func:`fit` with checkpoint/resume.

:func:`fit` owns one run folder::

    OUT/checkpoint.pt   latest epoch: model, optimizer, scheduler, RNG, epoch (for resume)
    OUT/metrics.csv     one row per epoch (epoch, train loss/acc, test OA/mAcc, lr, time)
    OUT/best.pt         weights with the best test OA so far
    OUT/final.pt        weights after the last epoch
    OUT/done.json       completion marker, written last: a finished run is never redone

Every file is written atomically. Calling :func:`fit` again on the same folder continues from
the last saved epoch (model, optimizer, scheduler, RNG, data order), or returns the recorded
result at once when ``done.json`` exists.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from bingnn.train.bn_recalibration import recalibrate_batchnorm
from bingnn.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from bingnn.train.metrics_log import MetricsLog
from bingnn.utils.atomic import atomic_write_text

__all__ = [
    "DONE_FILE",
    "METRIC_COLUMNS",
    "evaluate",
    "fit",
    "load_model_file",
    "make_loader",
    "resolve_device",
    "save_model_file",
    "train_one_epoch",
]

METRIC_COLUMNS = [
    "epoch",
    "train_loss",
    "train_acc",
    "test_oa",
    "test_macc",
    "lr",
    "time_s",
    "ce",
    "kd",
    "lsp",
]
DONE_FILE = "done.json"

#: ``callback(epoch, row)`` after each finished epoch (row = the metrics row just logged).
EpochCallback = Callable[[int, dict[str, Any]], None]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    d = str(device).lower()
    if d == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if d.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    try:
        return torch.device(d)
    except RuntimeError as e:
        raise ValueError(f"invalid device {device!r}: choose auto, cpu or cuda[:N]") from e


def make_loader(
    dataset: Dataset,
    batch_size: int,
    train: bool,
    seed: int = 0,
    device: torch.device | None = None,
) -> DataLoader:
    """Loader for ``(points, label)`` datasets. Training shuffles with a generator that
    :func:`fit` re-seeds every epoch (so a resumed run sees the same order) and drops a last
    batch of a single cloud (BatchNorm cannot train on one sample)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError("the dataset is empty")
    gen = torch.Generator().manual_seed(seed)
    pin = device is not None and device.type == "cuda"
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train and n % batch_size == 1 and n > 1,
        generator=gen if train else None,
        num_workers=0,
        pin_memory=pin,
    )


def _bar(iterable, desc: str, progress: bool, total: int | None = None):
    return tqdm(
        iterable, desc=desc, total=total, leave=False, disable=not progress, dynamic_ncols=True
    )


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: Optimizer,
    loss_fn: nn.Module,
    device: torch.device,
    teacher: nn.Module | None = None,
    progress: bool = True,
    desc: str = "train",
) -> dict[str, float]:
    """One pass over ``loader``.

    ``loss_fn(student_logits, labels, teacher_logits, student_graphs, teacher_graphs)`` returns
    ``(loss, parts)`` (see :class:`bingnn.distill.losses.DistillationLoss`). With a teacher, the
    teacher runs in eval mode without gradients; graphs are requested from both models only when
    ``loss_fn.needs_graphs``.

    Returns: ``{"train_loss", "train_acc", "ce", "kd", "lsp"}`` averaged over samples.
    """
    model.train()
    if teacher is not None:
        teacher.eval()
    graphs = teacher is not None and bool(getattr(loss_fn, "needs_graphs", False))
    sums: dict[str, float] = {}
    seen, correct = 0, 0
    bar = _bar(loader, desc, progress)
    for points, labels in bar:
        points = points.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        t_logits = t_graphs = s_graphs = None
        if teacher is not None:
            with torch.no_grad():
                out = teacher(points, return_graphs=graphs)
            t_logits, t_graphs = out if graphs else (out, None)
        out = model(points, return_graphs=graphs)
        logits, s_graphs = out if graphs else (out, None)
        loss, parts = loss_fn(logits, labels, t_logits, s_graphs, t_graphs)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss became {float(loss)} ({parts}); lower the learning rate"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        b = labels.shape[0]
        seen += b
        correct += int((logits.detach().argmax(-1) == labels).sum())
        sums["train_loss"] = sums.get("train_loss", 0.0) + float(loss.detach()) * b
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v * b
        bar.set_postfix(loss=f"{sums['train_loss'] / seen:.3f}", acc=f"{correct / seen:.3f}")
    if seen == 0:
        raise ValueError("the training loader yielded no batch (dataset smaller than a batch?)")
    res = {k: v / seen for k, v in sums.items()}
    res["train_acc"] = correct / seen
    return res


@torch.no_grad()
def predict(
    model: nn.Module, loader: DataLoader, device: torch.device, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true labels over ``loader`` (model in eval mode)."""
    model.eval()
    preds, targets = [], []
    for points, labels in _bar(loader, "eval", progress):
        logits = model(points.to(device, non_blocking=True))
        preds.append(logits.argmax(-1).cpu())
        targets.append(labels)
    if not preds:
        raise ValueError("the evaluation loader yielded no batch")
    return torch.cat(preds).numpy(), torch.cat(targets).numpy()


def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    num_classes: int,
    progress: bool = True,
) -> dict[str, float]:
    """Overall accuracy and mean per-class accuracy: ``{"test_oa", "test_macc"}`` in [0, 1]."""
    from bingnn.data.metrics import mean_class_accuracy, overall_accuracy

    pred, target = predict(model, loader, device, progress)
    return {
        "test_oa": overall_accuracy(pred, target),
        "test_macc": mean_class_accuracy(pred, target, num_classes),
    }


def save_model_file(
    path: str | os.PathLike, model: nn.Module, extra: Mapping[str, Any] | None = None
) -> None:
    """Weights + ``model.config`` (+ ``extra``, e.g. metrics) as a checkpoint that
    ``bingnn eval`` and the next distillation stage can rebuild the model from."""
    state = {"model": _cpu_state(model), "model_config": dict(getattr(model, "config", {}))}
    state.update(extra or {})
    save_checkpoint(path, state)


def load_model_file(
    path: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved by :func:`save_model_file` (or in a ``checkpoint.pt``).

    Returns ``(model, checkpoint dict)``; the model is on ``device`` in eval mode."""
    from bingnn.models import build_model
    from bingnn.train.checkpoint import CheckpointError

    ck = load_checkpoint(path)
    if "model" not in ck or "model_config" not in ck or not ck["model_config"]:
        raise CheckpointError(f"{path} holds no model weights with a model config")
    model = build_model(ck["model_config"])
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match the model config ({e})") from e
    return model.to(device).eval(), ck


def _cpu_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Pretty JSON, written atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    test_loader: DataLoader,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    loss_fn: nn.Module,
    *,
    epochs: int,
    out_dir: str | os.PathLike,
    device: torch.device,
    num_classes: int,
    teacher: nn.Module | None = None,
    config: Mapping[str, Any] | None = None,
    seed: int = 0,
    progress: bool = True,
    callbacks: Sequence[EpochCallback] = (),
    desc: str = "",
    bn_loader: DataLoader | None = None,
) -> dict[str, Any]:
    """Train for ``epochs`` epochs with per-epoch evaluation, checkpointing and resume.

    With ``bn_loader`` (typically the un-augmented training set), BatchNorm running statistics
    are recomputed over it after every epoch, before evaluation and saving
    (:func:`bingnn.train.bn_recalibration.recalibrate_batchnorm`).

    ``model``, ``optimizer`` and ``scheduler`` come freshly built; if ``out_dir`` holds a
    ``checkpoint.pt``, their states are restored from it and training continues after its
    epoch. If ``done.json`` exists, nothing is trained and its content is returned.

    Returns the completion record: ``{"epochs", "test_oa", "test_macc", "best_oa",
    "best_epoch", "params", "time_s"}`` (final-epoch metrics).
    """
    out = Path(out_dir)
    done = out / DONE_FILE
    if done.exists():
        return json.loads(done.read_text())
    out.mkdir(parents=True, exist_ok=True)
    if config is not None:
        write_json(out / "config.json", config)
    ck_path = out / "checkpoint.pt"
    log = MetricsLog(out / "metrics.csv", METRIC_COLUMNS)
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()
    start, best_oa, best_epoch, elapsed = 0, -1.0, 0, 0.0
    if ck_path.exists():
        ck = load_checkpoint(ck_path)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        set_rng_state(ck["rng"])
        start, best_oa, best_epoch = int(ck["epoch"]), float(ck["best_oa"]), int(ck["best_epoch"])
        elapsed = float(ck.get("time_s", 0.0))
        if progress:
            tqdm.write(f"{desc or out}: resuming after epoch {start}/{epochs}")
    log.truncate(after_epoch=start)
    row: dict[str, Any] = {}
    gen = getattr(train_loader, "generator", None)
    for epoch in range(start + 1, epochs + 1):
        t0 = time.perf_counter()
        ds = train_loader.dataset
        if hasattr(ds, "set_epoch"):
            ds.set_epoch(epoch)
        if gen is not None:
            gen.manual_seed(seed * 100_003 + epoch)  # the data order depends on the epoch only
        lr = optimizer.param_groups[0]["lr"]
        label = f"{desc} epoch {epoch}/{epochs}".strip()
        tr = train_one_epoch(
            model, train_loader, optimizer, loss_fn, device, teacher, progress, label
        )
        scheduler.step()
        if bn_loader is not None:
            recalibrate_batchnorm(model, bn_loader, device)
        ev = evaluate(model, test_loader, device, num_classes, progress)
        dt = time.perf_counter() - t0
        elapsed += dt
        row = {"epoch": epoch, **tr, **ev, "lr": lr, "time_s": round(dt, 3)}
        log.append(row)
        if ev["test_oa"] > best_oa:
            best_oa, best_epoch = ev["test_oa"], epoch
            save_model_file(out / "best.pt", model, {"metrics": row, "config": dict(config or {})})
        save_checkpoint(
            ck_path,
            {
                "model": _cpu_state(model),
                "model_config": dict(getattr(model, "config", {})),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng_state(),
                "epoch": epoch,
                "best_oa": best_oa,
                "best_epoch": best_epoch,
                "time_s": elapsed,
                "config": dict(config or {}),
            },
        )
        if progress:
            tqdm.write(
                f"{label}: loss {tr['train_loss']:.4f} train acc {tr['train_acc']:.4f} "
                f"OA {ev['test_oa']:.4f} mAcc {ev['test_macc']:.4f} ({dt:.1f}s)"
            )
        for cb in callbacks:
            cb(epoch, row)
    if not row:  # resumed after the last epoch but before the marker: re-read the last row
        rows = log.rows()
        row = rows[-1] if rows else evaluate(model, test_loader, device, num_classes, progress)
    record = {
        "epochs": epochs,
        "test_oa": float(row["test_oa"]),
        "test_macc": float(row["test_macc"]),
        "best_oa": float(max(best_oa, row["test_oa"])),
        "best_epoch": best_epoch,
        "params": sum(p.numel() for p in model.parameters()),
        "time_s": round(elapsed, 3),
    }
    save_model_file(out / "final.pt", model, {"metrics": record, "config": dict(config or {})})
    write_json(done, record)
    return record
