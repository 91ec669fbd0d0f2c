"""The epoch loop of every bingnn run: train, validate, select, checkpoint, resume, report.

:func:`fit` trains a model on a :class:`~bingnn.train.task.Task` with an
:class:`~bingnn.train.objective.Objective`, optionally distilling a frozen teacher, in one
process or in each process of a torchrun job (:mod:`bingnn.train.distributed`). With
``out_dir`` it owns one run folder::

    OUT/config.json     the resolved configuration (when given)
    OUT/checkpoint.pt   after every epoch: model, optimizer, scheduler, RNG, epoch, best so far
    OUT/metrics.csv     one row per epoch: loss terms, train accuracy, validation scores, lr
    OUT/best.pt         the weights of the best validation epoch: the run's model
    OUT/final.pt        the weights after the last epoch
    OUT/done.json       completion record, written last: a finished run is never redone

Model selection reads the validation split only. The test split is evaluated once, after the
last epoch, on the selected weights, for the report (``done.json``). Each epoch ends in this
order: validation, scheduler step, ``best.pt``, ``metrics.csv``, ``checkpoint.pt``; calling
:func:`fit` again on the folder continues after the last checkpointed epoch with the model,
optimizer, scheduler (learning rate included) and random state a straight run would have, or
returns the recorded result at once when ``done.json`` exists. Every file is written
atomically, by rank 0 only.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from bingnn.train.bn_recalibration import recalibrate_batchnorm
from bingnn.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from bingnn.train.distributed import DistContext, sync_batchnorm
from bingnn.train.metrics_log import MetricsLog
from bingnn.train.model_files import cpu_state, save_model_file, write_json
from bingnn.train.objective import Objective
from bingnn.train.optim import Scheduler, step_scheduler
from bingnn.train.task import Batch, Task

__all__ = ["DONE_FILE", "FitResult", "fit", "metric_columns", "set_seed"]

DONE_FILE = "done.json"

#: ``callback(epoch, row)`` after each finished epoch (row = the metrics row just logged).
EpochCallback = Callable[[int, dict[str, Any]], None]


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def metric_columns(task: Task) -> list[str]:
    """The columns of ``metrics.csv`` for ``task``."""
    return ["epoch", "lr", "time_s", "loss", "ce", "kd", "lsp", "train_acc",
            *(f"val_{m}" for m in task.metrics)]


@dataclass
class FitResult:
    """The completion record (``done.json``), the selected weights and the per-epoch rows."""

    record: dict[str, Any]
    best_state: dict[str, Tensor] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def _is_float_model(model: nn.Module) -> bool:
    """Float weights and activations: a teacher (stage 0) or a stage-1 (``tanh``) student."""
    return int(getattr(model, "config", {}).get("stage", 0)) <= 1


def _autocast(enabled: bool, device: torch.device):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _float_structure(struct: Sequence | None) -> list | None:
    if struct is None:
        return None
    out = []
    for s in struct:
        s = copy.copy(s)
        s.features = s.features.float()
        out.append(s)
    return out


def _bar(total: int | None, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, disable=not enabled, dynamic_ncols=True)


class _Teacher:
    """The frozen teacher: eval mode, no gradients, optional bf16, outputs of constant inputs
    (full-batch graphs) computed once."""

    def __init__(self, model: nn.Module | None, task: Task, structure: bool, bf16: bool,
                 device: torch.device) -> None:
        self.model, self.task, self.structure = model, task, structure
        self.amp = bf16 and model is not None and _is_float_model(model)
        self.device = device
        self.cache: dict[Any, tuple[Tensor, list | None]] = {}
        if model is not None:
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)

    @torch.no_grad()
    def __call__(self, batch: Batch) -> tuple[Tensor | None, list | None]:
        if self.model is None:
            return None, None
        if batch.cache_key is not None and batch.cache_key in self.cache:
            return self.cache[batch.cache_key]
        with _autocast(self.amp, self.device):
            logits, struct = self.task.forward(self.model, batch, self.structure)
        out = (logits.float(), _float_structure(struct))
        if batch.cache_key is not None:
            self.cache[batch.cache_key] = out
        return out


def _train_epoch(
    task: Task, model: nn.Module, net: nn.Module, teacher: _Teacher, objective: Objective,
    optimizer: Optimizer, epoch: int, ctx: DistContext, amp: bool, bar_desc: str,
    progress: bool,
) -> dict[str, float]:
    """One pass over the task's training batches; returns epoch averages over all processes
    (loss terms weighted by the global batch size, accuracy over labelled rows)."""
    model.train()
    structure = teacher.model is not None and objective.uses_lsp
    sums = torch.zeros(6, dtype=torch.float64)  # loss, ce, kd, lsp, correct, labelled
    weight = 0.0
    have = {"ce": False, "kd": False, "lsp": False}
    bar = _bar(None, bar_desc, progress and ctx.is_main)
    for batch in task.train_batches(epoch, ctx):
        t_logits, t_struct = teacher(batch)
        with _autocast(amp, ctx.device):
            logits, s_struct = task.forward(net, batch, structure)
        logits = logits.float()
        loss, parts = objective(logits, batch, t_logits, _float_structure(s_struct), t_struct)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(
                f"training loss became {value} ({parts}) in epoch {epoch}; lower the learning "
                "rate"
            )
        optimizer.zero_grad(set_to_none=True)
        # DDP averages gradients over the W processes; the local terms are already shares of
        # the global mean, so their gradients must be summed: scale by W.
        (loss * ctx.world if ctx.distributed else loss).backward()
        optimizer.step()
        w = float(batch.size)
        weight += w
        sums[0] += value * w
        for i, key in enumerate(("ce", "kd", "lsp"), start=1):
            if key in parts:
                sums[i] += parts[key] * w
                have[key] = True
        if not task.multilabel and batch.y is not None:
            rows = batch.ce_rows
            pred = logits.detach().argmax(-1) if rows is None else logits.detach()[rows].argmax(-1)
            y = batch.y if rows is None else batch.y[rows]
            sums[4] += float((pred == y.view(-1)).sum())
            sums[5] += float(pred.numel())
        bar.update(1)
    bar.close()
    if weight == 0:
        raise ValueError("the training data yielded no batch")
    total = ctx.all_reduce_sum(sums)
    out = {"loss": float(total[0]) / weight, "ce": float(total[1]) / weight}
    out["kd"] = float(total[2]) / weight if have["kd"] else None
    out["lsp"] = float(total[3]) / weight if have["lsp"] else None
    out["train_acc"] = float(total[4] / total[5]) if total[5] > 0 else None
    return out


def _save_checkpoint(path: Path, model, optimizer, scheduler, epoch: int, best: dict,
                     last_val: dict, elapsed: float, config, ctx: DistContext) -> None:
    rngs = [rng_state()]
    if ctx.distributed:
        import torch.distributed as dist

        rngs = [None] * ctx.world
        dist.all_gather_object(rngs, rng_state())
    if not ctx.is_main:
        return
    save_checkpoint(path, {
        "model": cpu_state(model),
        "model_config": dict(getattr(model, "config", {})),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rngs[0],
        "rng_per_rank": rngs,
        "epoch": epoch,
        "best": best,
        "last_val": last_val,
        "time_s": elapsed,
        "config": dict(config or {}),
    })


def fit(
    task: Task,
    model: nn.Module,
    objective: Objective,
    optimizer: Optimizer,
    scheduler: Scheduler,
    *,
    epochs: int,
    out_dir: str | os.PathLike | None = None,
    teacher: nn.Module | None = None,
    seed: int = 0,
    config: Mapping[str, Any] | None = None,
    ctx: DistContext | None = None,
    recalibrate_bn: bool = False,
    recalibrate_samples: int | None = None,
    bf16: bool = False,
    progress: bool = False,
    callbacks: Sequence[EpochCallback] = (),
    desc: str = "",
) -> FitResult:
    """Train ``model`` for ``epochs`` epochs, select it on validation, report it on test.

    Args:
        task: the data, its batches and its evaluation.
        model: freshly built (its state is restored from ``out_dir/checkpoint.pt`` if any).
        objective: CE (+ KD + LSP with a teacher).
        optimizer, scheduler: freshly built over ``model``'s parameters
            (:mod:`bingnn.train.optim`).
        epochs: epochs of the run (>= 1).
        out_dir: the run folder (module docstring); ``None`` keeps everything in memory.
        teacher: a frozen model to distil, run in eval mode in every process.
        seed: seeds every random generator at the start of a fresh run (all processes alike).
        config: written as ``config.json`` and into the model files.
        ctx: the process context (:func:`bingnn.train.distributed.init_distributed`);
            default one process on the model's device.
        recalibrate_bn: recompute BatchNorm statistics over the un-augmented training set
            after every epoch, before validation (:mod:`bingnn.train.bn_recalibration`).
        recalibrate_samples: with ``recalibrate_bn``, recalibrate on the same seeded,
            class-stratified subset of this many training examples at every epoch (point
            clouds; ``None``: all of them).
        bf16: CUDA only: bfloat16 autocast for float models (teacher, stage 0 and 1
            students); binary students run in float32, so their signs are exact.
        progress: progress bars and one line per epoch (rank 0).
        callbacks: ``cb(epoch, row)`` after each epoch, once its checkpoint is written.
        desc: a name for the progress lines.

    Returns:
        :class:`FitResult`; ``record`` = ``{"epochs", "best_epoch", "val" (scores of the
        best epoch), "test" (scores of the selected weights), "last_val", "params",
        "time_s"}``.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if ctx is None:
        dev = next(iter(model.parameters()), torch.empty(0)).device
        ctx = DistContext(device=dev)
    if recalibrate_samples is not None and not recalibrate_bn:
        raise ValueError("recalibrate_samples sets the size of the BatchNorm recalibration "
                         "pass; it needs recalibrate_bn = true")
    if bf16 and ctx.device.type != "cuda":
        raise ValueError("bfloat16 autocast (--bf16) needs a CUDA device; drop it on the CPU")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and (out / DONE_FILE).exists():
        record = json.loads((out / DONE_FILE).read_text())
        return FitResult(record)

    device = ctx.device
    model.to(device)
    if teacher is not None:
        teacher.to(device)
    task.preflight(model)  # a model that cannot run on this data fails before any write
    if ctx.distributed and not task.replicated_inputs:
        sync_batchnorm(model)
    net: nn.Module = model
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    t = _Teacher(teacher, task, objective.uses_lsp, bf16, device)
    amp = bf16 and _is_float_model(model)

    log = None
    ck_path = None
    if out is not None:
        ck_path = out / "checkpoint.pt"
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
            if config is not None:
                write_json(out / "config.json", config)
            log = MetricsLog(out / "metrics.csv", metric_columns(task))
    start, elapsed = 0, 0.0
    best: dict[str, Any] = {"epoch": 0, "val": None}
    best_state: dict[str, Tensor] | None = None
    last_val: dict[str, float] = {}
    if ck_path is not None and ck_path.exists():
        ck = load_checkpoint(ck_path)
        missing = [k for k in ("model", "optimizer", "scheduler", "rng", "epoch", "best")
                   if k not in ck]
        if missing:
            raise CheckpointError(
                f"{ck_path} was not written by this trainer (no {', '.join(missing)}); it "
                "cannot be resumed: use another output folder or delete this one"
            )
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        rngs = ck.get("rng_per_rank") or [ck["rng"]]
        set_rng_state(rngs[ctx.rank] if len(rngs) == ctx.world else rngs[0])
        start, best = int(ck["epoch"]), dict(ck["best"])
        last_val, elapsed = dict(ck.get("last_val") or {}), float(ck.get("time_s", 0.0))
        if best["epoch"] > 0:
            best_state = load_checkpoint(out / "best.pt")["model"]  # type: ignore[operator]
        if progress and ctx.is_main:
            print(f"{desc or out}: resuming after epoch {start}/{epochs}", flush=True)
    else:
        set_seed(seed)
    if log is not None:
        log.truncate(after_epoch=start)
    history = log.rows() if log is not None else []
    sel = task.selection_metric
    for epoch in range(start + 1, epochs + 1):
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        label = f"{desc} epoch {epoch}/{epochs}".strip()
        tr = _train_epoch(task, model, net, t, objective, optimizer, epoch, ctx, amp, label,
                          progress)
        if recalibrate_bn:
            recalibrate_batchnorm(model, task.recalibration_batches(ctx, recalibrate_samples),
                                  forward=lambda m, b: m(*b.inputs))
        val = task.evaluate(model, "val", ctx)
        score = val[sel]
        step_scheduler(scheduler, score)
        dt = time.perf_counter() - t0
        elapsed += dt
        last_val = dict(val)
        row = {"epoch": epoch, "lr": lr, "time_s": round(dt, 3), **tr,
               **{f"val_{k}": v for k, v in val.items()}}
        if best["val"] is None or score > best["val"][sel]:
            best = {"epoch": epoch, "val": dict(val)}
            best_state = cpu_state(model)
            if out is not None and ctx.is_main:
                save_model_file(out / "best.pt", model, {"metrics": row,
                                                        "config": dict(config or {})},
                                state=best_state)
        if log is not None:
            log.append(row)
        history.append(row)
        if ck_path is not None:
            _save_checkpoint(ck_path, model, optimizer, scheduler, epoch, best, last_val,
                             elapsed, config, ctx)
        if progress and ctx.is_main:
            extra = " ".join(f"{k} {v:.4f}" for k, v in val.items())
            print(f"{label}: loss {tr['loss']:.4f} val {extra} ({dt:.1f}s)", flush=True)
        for cb in callbacks:
            cb(epoch, row)

    # The report: the selected weights on the test split, read here for the first time.
    selected = copy.deepcopy(model)
    if best_state is not None:
        selected.load_state_dict(best_state)
    test = task.evaluate(selected, "test", ctx)
    record = {
        "epochs": epochs,
        "best_epoch": int(best["epoch"]),
        "val": best["val"],
        "test": test,
        "last_val": last_val,
        "params": sum(p.numel() for p in model.parameters()),
        "time_s": round(elapsed, 3),
    }
    if out is not None and ctx.is_main:
        save_model_file(out / "final.pt", model, {"metrics": record,
                                                 "config": dict(config or {})})
        write_json(out / DONE_FILE, record)
    ctx.barrier()
    return FitResult(record, best_state, history)
